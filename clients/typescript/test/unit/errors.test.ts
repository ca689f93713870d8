import { describe, expect, it } from 'vitest';

import { errorFromResponse } from '../../src/errors.js';

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

describe('errorFromResponse', () => {
  it('keeps where a script does not compile', async () => {
    const error = await errorFromResponse(
      json(
        400,
        { error: { code: 'script_compile_error', message: "line 2, column 9: Expecting ';'", line: 2, column: 9 } },
        { 'x-request-id': 'req-1' },
      ),
    );
    expect(error).toMatchObject({
      status: 400,
      code: 'script_compile_error',
      message: "line 2, column 9: Expecting ';'",
      requestId: 'req-1',
      line: 2,
      column: 9,
    });
  });

  it('leaves line and column out of other errors and of malformed ones', async () => {
    const plain = await errorFromResponse(json(404, { error: { code: 'topic_not_found', message: 'no topic' } }));
    expect(plain).toMatchObject({ code: 'topic_not_found', line: undefined, column: undefined });
    const odd = await errorFromResponse(json(400, { error: { code: 'invalid_request', line: '2', column: null } }));
    expect(odd).toMatchObject({ code: 'invalid_request', message: 'invalid_request', line: undefined, column: undefined });
  });

  it('answers a body that is not JSON with the status', async () => {
    const error = await errorFromResponse(new Response('upstream down', { status: 502 }));
    expect(error).toMatchObject({ status: 502, code: 'http_502', message: 'HTTP 502: upstream down' });
  });
});
