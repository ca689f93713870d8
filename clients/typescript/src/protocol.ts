/**
 * The realtime wire protocol (version 1): frame names and the shapes of their `data`,
 * read defensively, since a frame comes from the network.
 */

/** The protocol major version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** Frame names with a meaning of their own; any other name is an event's type. */
export const FRAME = {
  hello: 'hello',
  reset: 'reset',
  tokenExpiring: 'token_expiring',
  tokenExpired: 'token_expired',
} as const;

/** An event received from a subscription. */
export interface PicloudEvent<T = unknown> {
  /** The topic it was published to. */
  readonly topic: string;
  /** Its position in the topic's log (gap-free, increasing). */
  readonly seq: number;
  /** The event type (`message` unless the publisher named one). */
  readonly type: string;
  /** The published JSON value. */
  readonly data: T;
  /** Commit time, ms since the epoch. */
  readonly publishedAt: number;
  /**
   * The stream's resume cursor after this event (`topic:seq,…`, not an event id): pass
   * it as `lastEventId` to continue from here.
   */
  readonly cursor: string;
  /** @deprecated The same value as {@link PicloudEvent.cursor}, under its old name. */
  readonly id: string;
}

/** The first frame of every stream. */
export interface Hello {
  /** The protocol version, e.g. 1. */
  readonly protocol: number;
  /** Seconds between heartbeat comments. */
  readonly heartbeatSecs: number;
  /** The stream's topics. */
  readonly topics: readonly string[];
  /** Where the stream starts. */
  readonly cursor: string;
}

/** A range of events the server could no longer replay. */
export interface LostRange {
  readonly topic: string;
  readonly fromSeq: number;
  readonly toSeq: number;
}

/** Continuity was lost: the given cursor could not be honoured. */
export interface ResetInfo {
  /** `cursor_expired` (events were pruned by retention) or `cursor_invalid`. */
  readonly reason: string;
  /** Where the stream continues from. */
  readonly cursor: string;
  /** The events that will never arrive (empty for `cursor_invalid`). */
  readonly lost: readonly LostRange[];
}

type Json = Record<string, unknown>;

function object(text: string): Json | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Json)
      : undefined;
  } catch {
    return undefined;
  }
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

/** The major version of a `protocol` field (`1`, `1.2` or `"1.2"`), if readable. */
export function protocolMajor(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return Math.trunc(value);
  if (typeof value === 'string' && /^[0-9]+(\.[0-9]+)*$/.test(value)) {
    return Number(value.split('.')[0]);
  }
  return undefined;
}

/** Reads a `hello` frame; `protocol` is kept raw so an unknown version can be reported. */
export function parseHello(data: string): (Omit<Hello, 'protocol'> & { protocol: unknown }) | undefined {
  const o = object(data);
  if (!o) return undefined;
  return {
    protocol: o.protocol,
    heartbeatSecs: typeof o.heartbeat_secs === 'number' && o.heartbeat_secs > 0 ? o.heartbeat_secs : 30,
    topics: Array.isArray(o.topics) ? o.topics.filter((t): t is string => typeof t === 'string') : [],
    cursor: typeof o.cursor === 'string' ? o.cursor : '',
  };
}

/** Reads a `reset` frame. */
export function parseReset(data: string, frameId: string): ResetInfo | undefined {
  const o = object(data);
  if (!o) return undefined;
  const lost: LostRange[] = [];
  if (Array.isArray(o.lost)) {
    for (const item of o.lost as unknown[]) {
      if (typeof item !== 'object' || item === null) continue;
      const r = item as Json;
      if (typeof r.topic === 'string' && isInt(r.from_seq) && isInt(r.to_seq)) {
        lost.push({ topic: r.topic, fromSeq: r.from_seq, toSeq: r.to_seq });
      }
    }
  }
  return {
    reason: typeof o.reason === 'string' ? o.reason : 'unknown',
    cursor: typeof o.cursor === 'string' ? o.cursor : frameId,
    lost,
  };
}

/** An event frame's payload, before the cursor is attached. */
export type EventPayload = Omit<PicloudEvent, 'cursor' | 'id'>;

/** The event handed to subscribers: `payload` at stream position `cursor`. */
export function eventAt<T>(payload: EventPayload, cursor: string): PicloudEvent<T> {
  // eslint-disable-next-line @typescript-eslint/no-deprecated -- the alias is still set
  return { ...payload, cursor, id: cursor } as PicloudEvent<T>;
}

/** Reads an event frame. */
export function parseEvent(data: string): EventPayload | undefined {
  const o = object(data);
  if (!o || typeof o.topic !== 'string' || !isInt(o.seq)) return undefined;
  return {
    topic: o.topic,
    seq: o.seq,
    type: typeof o.type === 'string' ? o.type : 'message',
    data: o.data,
    publishedAt: isInt(o.published_at) ? o.published_at : 0,
  };
}

/** Reads the ms timestamp of a `token_expiring` / `token_expired` frame. */
export function parseTokenTime(data: string, field: 'expires_at' | 'expired_at'): number | undefined {
  const value = object(data)?.[field];
  return isInt(value) ? value : undefined;
}
