import { describe, expect, it } from 'vitest';
import {
  compileMessage,
  micros,
  parseEvent,
  parseHeaders,
  parseQuery,
  positionText,
  runErrorPosition,
  sampleEvent,
  scriptNameProblem,
} from '../../src/lib/scripts';

describe('script helpers', () => {
  it('checks names by the topic-name rules', () => {
    expect(scriptNameProblem('mint_token')).toBe('');
    expect(scriptNameProblem('orders/v1:on-created.2')).toBe('');
    expect(scriptNameProblem('')).toContain('name');
    expect(scriptNameProblem('a b')).toContain('not spaces');
    expect(scriptNameProblem('é')).toContain('“é”');
    expect(scriptNameProblem('x'.repeat(201))).toContain('200');
  });

  it('reads a query from lines, a query string or JSON', () => {
    expect(parseQuery('')).toEqual({});
    expect(parseQuery('lang=fr\n\nn = 2\nflag')).toEqual({ lang: 'fr', n: '2', flag: '' });
    expect(parseQuery('?a=1&b=x=y')).toEqual({ a: '1', b: 'x=y' });
    expect(parseQuery('{"a": "1", "n": 2}')).toEqual({ a: '1', n: '2' });
    expect(() => parseQuery('=1')).toThrow('no name');
    expect(() => parseQuery('{nope')).toThrow('not valid JSON');
    expect(() => parseQuery('[1]')).toThrow('JSON object');
  });

  it('reads headers from lines or JSON, names in lower case', () => {
    expect(parseHeaders('Content-Type: application/json\nX-Trace:  a:b ')).toEqual({ 'content-type': 'application/json', 'x-trace': 'a:b' });
    expect(parseHeaders('{"Authorization": "Bearer x"}')).toEqual({ authorization: 'Bearer x' });
    expect(parseHeaders('  ')).toEqual({});
    expect(() => parseHeaders('no colon')).toThrow('name: value');
  });

  it('reads an event as JSON and offers a sample envelope', () => {
    expect(parseEvent('{"a": 1}')).toEqual({ a: 1 });
    expect(() => parseEvent('{')).toThrow('The event is not valid JSON');
    expect(JSON.parse(sampleEvent('shop', 5))).toEqual({
      id: 'evt_test', app: 'shop', topic: 'orders', seq: 1, type: 'order.created', data: { id: 42, total: 19.9 }, published_at: 5,
    });
  });

  it('puts errors and durations in words', () => {
    expect(compileMessage("the script does not compile: line 2, column 9: Expecting ';'")).toBe("Expecting ';'");
    expect(compileMessage('something else')).toBe('something else');
    expect(runErrorPosition("Runtime error: boom (line 3, position 5)\nin call to function 'handle'")).toEqual({ line: 3, column: 5 });
    expect(runErrorPosition('the script ran longer than its limit of 1000 ms')).toBeUndefined();
    expect(positionText({ line: 2, column: 9 })).toBe('Line 2, column 9');
    expect(positionText({ line: 2, column: 0 })).toBe('Line 2');
    expect(positionText({ line: 0, column: 0 })).toBe('');
    expect([micros(180), micros(4210), micros(42_000), micros(1_250_000)]).toEqual(['180 µs', '4.2 ms', '42 ms', '1.25 s']);
  });
});
