/** The one error type the SDK throws and reports. */

import type { WireSchema } from './wire.js';

/** Codes the client itself produces; the server's own codes (`topic_not_found`, …) pass through. */
export type ClientErrorCode =
  /** The request never got an answer (DNS, refused, reset, offline). */
  | 'network_error'
  /** The server answered with something that is not what the API promises. */
  | 'invalid_response'
  /** A `Validator` rejected a response. */
  | 'validation_failed'
  /** The server speaks a realtime protocol major version this client does not know. */
  | 'protocol_incompatible'
  /** No byte arrived for twice the heartbeat interval: the connection is dead. */
  | 'heartbeat_timeout'
  /** The stream ended without saying why (e.g. the server shut down). */
  | 'stream_ended'
  /** The app's `getToken` threw or returned no token. */
  | 'token_refresh_failed';

/** An HTTP or subscription failure, with the server's JSON error when there was one. */
export class PicloudError extends Error {
  /** The HTTP status, or 0 when there was no HTTP answer. */
  readonly status: number;
  /** A stable machine-readable code: the server's (`unauthorized`, `topic_not_found`, …)
   * or one of {@link ClientErrorCode}. */
  readonly code: string;
  /** The server's `x-request-id`, when it sent one. */
  readonly requestId: string | undefined;
  /** For a script that does not compile (`script_compile_error`): the 1-based line. */
  readonly line: number | undefined;
  /** For a script that does not compile: the 1-based column. */
  readonly column: number | undefined;

  constructor(
    status: number,
    code: string,
    message: string,
    options: {
      cause?: unknown;
      requestId?: string | undefined;
      line?: number | undefined;
      column?: number | undefined;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PicloudError';
    this.status = status;
    this.code = code;
    this.requestId = options.requestId;
    this.line = options.line;
    this.column = options.column;
  }
}

/** Builds the error for a non-2xx answer from its `{"error":{"code","message"}}` body. */
export async function errorFromResponse(response: Response): Promise<PicloudError> {
  const requestId = response.headers.get('x-request-id') ?? undefined;
  let text = '';
  try {
    text = await response.text();
  } catch {
    // The body is optional; the status still says what happened.
  }
  try {
    // An `ErrorBody`, read defensively: any field may be missing or of another type.
    const body = JSON.parse(text) as { error?: { [K in keyof WireSchema<'ErrorDetail'>]?: unknown } };
    const { code, message, line, column } = body.error ?? {};
    if (typeof code === 'string') {
      return new PicloudError(response.status, code, typeof message === 'string' ? message : code, {
        requestId,
        line: typeof line === 'number' ? line : undefined,
        column: typeof column === 'number' ? column : undefined,
      });
    }
  } catch {
    // Not JSON: fall through to a generic error.
  }
  return new PicloudError(
    response.status,
    `http_${String(response.status)}`,
    `HTTP ${String(response.status)}${text ? `: ${text.slice(0, 200)}` : ''}`,
    { requestId },
  );
}

/** Wraps a failed `fetch` (no HTTP answer) as a `network_error`. */
export function networkError(cause: unknown): PicloudError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new PicloudError(0, 'network_error', `network error: ${detail}`, { cause });
}
