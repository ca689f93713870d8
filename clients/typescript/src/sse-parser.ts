/**
 * A streaming Server-Sent Events parser that follows the WHATWG HTML "event stream
 * interpretation" rules: UTF-8 with an optional leading BOM, lines ending in CR, LF or
 * CRLF, `data` over several lines, comments, `id` (ignored when it contains NUL) and
 * `retry` (digits only). Chunks may be split at any byte, even inside a UTF-8 sequence
 * or between the CR and LF of one line break.
 */

/** One dispatched event. */
export interface SseMessage {
  /** The `event` field, or `message` when the frame named none. */
  readonly event: string;
  /** The `data` lines joined with `\n`. */
  readonly data: string;
  /** The last event ID at dispatch time (`''` when no frame set one yet). */
  readonly id: string;
}

/** What the parser reports while it reads. */
export interface SseHandlers {
  /** A complete event (a blank line after at least one `data` field). */
  onMessage(message: SseMessage): void;
  /** A comment line (`: heartbeat`), without the colon and one leading space. */
  onComment?(text: string): void;
  /** A valid `retry` field: the server's suggested reconnection delay in ms. */
  onRetry?(ms: number): void;
}

const LF = 10;
const CR = 13;

/** Parses one event stream; make a new parser for every connection. */
export class SseParser {
  readonly #handlers: SseHandlers;
  readonly #decoder = new TextDecoder('utf-8');
  #started = false;
  #partialLine = '';
  #skipLeadingLf = false;
  #data = '';
  #hasData = false;
  #eventType = '';
  #lastEventId = '';

  constructor(handlers: SseHandlers) {
    this.#handlers = handlers;
  }

  /** The last event ID buffer: the most recent valid `id` field seen. */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /** Feeds the next chunk of the stream, as bytes or already-decoded text. */
  push(chunk: Uint8Array | string): void {
    let text = typeof chunk === 'string' ? chunk : this.#decoder.decode(chunk, { stream: true });
    if (!this.#started && text.length > 0) {
      this.#started = true;
      // TextDecoder already drops a BOM from bytes; text input needs it done here.
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    this.#feed(text);
  }

  #feed(text: string): void {
    let start = 0;
    if (this.#skipLeadingLf && text.length > 0) {
      this.#skipLeadingLf = false;
      if (text.charCodeAt(0) === LF) start = 1;
    }
    for (let i = start; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== LF && c !== CR) continue;
      const line = this.#partialLine + text.slice(start, i);
      this.#partialLine = '';
      if (c === CR) {
        if (i + 1 < text.length) {
          if (text.charCodeAt(i + 1) === LF) i++;
        } else {
          // The LF of a CRLF may arrive with the next chunk.
          this.#skipLeadingLf = true;
        }
      }
      start = i + 1;
      this.#line(line);
    }
    this.#partialLine += text.slice(start);
  }

  #line(line: string): void {
    if (line === '') {
      this.#dispatch();
      return;
    }
    if (line.startsWith(':')) {
      this.#handlers.onComment?.(stripOneSpace(line.slice(1)));
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : stripOneSpace(line.slice(colon + 1));
    switch (field) {
      case 'event':
        this.#eventType = value;
        break;
      case 'data':
        this.#data = this.#hasData ? `${this.#data}\n${value}` : value;
        this.#hasData = true;
        break;
      case 'id':
        if (!value.includes('\0')) this.#lastEventId = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.#handlers.onRetry?.(Number(value));
        break;
      default:
        // Unknown fields are ignored.
        break;
    }
  }

  #dispatch(): void {
    const hasData = this.#hasData;
    const message: SseMessage = {
      event: this.#eventType === '' ? 'message' : this.#eventType,
      data: this.#data,
      id: this.#lastEventId,
    };
    this.#data = '';
    this.#hasData = false;
    this.#eventType = '';
    if (hasData) this.#handlers.onMessage(message);
  }
}

function stripOneSpace(value: string): string {
  return value.startsWith(' ') ? value.slice(1) : value;
}
