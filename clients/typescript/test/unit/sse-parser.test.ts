import { describe, expect, it } from 'vitest';

import { SseParser, type SseMessage } from '../../src/sse-parser.js';

interface Parsed {
  messages: SseMessage[];
  comments: string[];
  retries: number[];
}

function parse(chunks: (string | Uint8Array)[]): Parsed {
  const out: Parsed = { messages: [], comments: [], retries: [] };
  const parser = new SseParser({
    onMessage: (m) => out.messages.push(m),
    onComment: (c) => out.comments.push(c),
    onRetry: (ms) => out.retries.push(ms),
  });
  for (const chunk of chunks) parser.push(chunk);
  return out;
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Every way to cut `stream` in two, plus one byte at a time. */
function splits(stream: Uint8Array): Uint8Array[][] {
  const ways: Uint8Array[][] = [];
  for (let cut = 0; cut <= stream.length; cut++) ways.push([stream.slice(0, cut), stream.slice(cut)]);
  ways.push(Array.from(stream, (b) => Uint8Array.of(b)));
  return ways;
}

describe('SseParser', () => {
  it('joins several data lines with LF and names the event', () => {
    const { messages } = parse(['event: order.created\ndata: {"a":\ndata: 1}\n\n']);
    expect(messages).toEqual([{ event: 'order.created', data: '{"a":\n1}', id: '' }]);
  });

  it('defaults the event name to message', () => {
    expect(parse(['data: x\n\n']).messages[0]?.event).toBe('message');
  });

  it.each([
    ['LF', '\n'],
    ['CR', '\r'],
    ['CRLF', '\r\n'],
  ])('accepts %s line endings', (_, eol) => {
    const stream = ['id: 1', 'event: e', 'data: a', 'data: b', '', 'data: c', '', ''].join(eol);
    const { messages } = parse([stream]);
    expect(messages).toEqual([
      { event: 'e', data: 'a\nb', id: '1' },
      { event: 'message', data: 'c', id: '1' },
    ]);
  });

  it('accepts mixed line endings in one stream', () => {
    const { messages } = parse(['data: a\rdata: b\r\ndata: c\n\r\n']);
    expect(messages).toEqual([{ event: 'message', data: 'a\nb\nc', id: '' }]);
  });

  it('reports comments and does not dispatch them', () => {
    const out = parse([': heartbeat\n:no space\n\ndata: x\n\n']);
    expect(out.comments).toEqual(['heartbeat', 'no space']);
    expect(out.messages.map((m) => m.data)).toEqual(['x']);
  });

  it('keeps the last event id across events and lets an empty id clear it', () => {
    const { messages } = parse(['id: a:1\ndata: 1\n\ndata: 2\n\nid\ndata: 3\n\n']);
    expect(messages.map((m) => m.id)).toEqual(['a:1', 'a:1', '']);
  });

  it('ignores an id containing NUL', () => {
    const { messages } = parse(['id: good\ndata: 1\n\nid: b\0ad\ndata: 2\n\n']);
    expect(messages.map((m) => m.id)).toEqual(['good', 'good']);
  });

  it('reports retry only when it is all digits', () => {
    expect(parse(['retry: 2500\nretry: 1.5\nretry: x\nretry:  7\n\n']).retries).toEqual([2500]);
  });

  it('strips exactly one space after the colon and handles fields without a colon', () => {
    const { messages } = parse(['data:  two spaces\ndata\ndata:none\n\n']);
    expect(messages[0]?.data).toBe(' two spaces\n\nnone');
  });

  it('dispatches a frame whose only data line is empty, but not a frame without data', () => {
    const { messages } = parse(['event: nothing\n\ndata:\n\n']);
    expect(messages).toEqual([{ event: 'message', data: '', id: '' }]);
  });

  it('ignores unknown fields', () => {
    expect(parse(['foo: bar\ndata: x\n\n']).messages).toHaveLength(1);
  });

  it('drops a leading BOM, in bytes or text, but only at the start', () => {
    expect(parse([Uint8Array.of(0xef, 0xbb, 0xbf, ...bytes('data: a\n\n'))]).messages[0]?.data).toBe('a');
    expect(parse(['\uFEFFdata: b\n\n']).messages[0]?.data).toBe('b');
    // Split inside the BOM.
    expect(parse([Uint8Array.of(0xef), Uint8Array.of(0xbb, 0xbf), bytes('data: c\n\n')]).messages[0]?.data).toBe(
      'c',
    );
    // A later BOM is part of the field name, which is then unknown.
    expect(parse(['data: d\n\n', '\uFEFFdata: e\n\n']).messages.map((m) => m.data)).toEqual(['d']);
  });

  it('does not dispatch an unterminated frame', () => {
    expect(parse(['data: x\n']).messages).toEqual([]);
  });

  it('gives the same result for a stream split at any byte', () => {
    const stream = bytes(
      '\uFEFF: hi\r\nid: chat:lobby:7,orders:12\r\nevent: hello\r\ndata: {"protocol":1}\r\n\r\n' +
        'id: orders:13\revent: order.created\rdata: {"name":"Zoë 🍕",\rdata: "x":1}\r\r' +
        'retry: 1500\ndata: last\n\n',
    );
    const expected = parse([stream]);
    expect(expected.messages).toHaveLength(3);
    expect(expected.messages[1]?.data).toBe('{"name":"Zoë 🍕",\n"x":1}');
    for (const chunks of splits(stream)) expect(parse(chunks)).toEqual(expected);
  });

  it('treats CR then LF in the next chunk as one line break', () => {
    const { messages } = parse(['data: a\r', '\ndata: b\r', '\n\r', '\n']);
    expect(messages).toEqual([{ event: 'message', data: 'a\nb', id: '' }]);
  });
});
