/**
 * React bindings: `useTopic` (a subscription as state, on `useSyncExternalStore`) and
 * `useEndpoint` (a typed request as state). The client comes from `<PicloudProvider>`
 * or the `client` option.
 */

import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useState,
  useSyncExternalStore,
  type ReactNode,
  type ReactElement,
} from 'react';

import type { PicloudClient } from './client.js';
import { PicloudError } from './errors.js';
import type { Endpoint } from './http.js';
import { TopicStore, type Subscriber, type TopicState, type TopicStoreOptions } from './store.js';

export type { TopicState, TopicStoreOptions } from './store.js';

const ClientContext = createContext<PicloudClient | undefined>(undefined);

/** Makes `client` the default for the hooks below it. */
export function PicloudProvider(props: { client: PicloudClient; children?: ReactNode }): ReactElement {
  return createElement(ClientContext.Provider, { value: props.client }, props.children);
}

/** The client from the nearest `<PicloudProvider>`. */
export function usePicloudClient(): PicloudClient {
  const client = useContext(ClientContext);
  if (!client) throw new Error('@picloud/client/react: wrap the tree in <PicloudProvider client={…}>');
  return client;
}

function useClient<C>(explicit: C | undefined): C | PicloudClient {
  const fromContext = useContext(ClientContext);
  const client = explicit ?? fromContext;
  if (!client) throw new Error('@picloud/client/react: pass `client` or wrap the tree in <PicloudProvider>');
  return client;
}

/** Options of {@link useTopic}. */
export interface UseTopicOptions<T = unknown> extends TopicStoreOptions<T> {
  /** The client to use instead of the provider's. */
  readonly client?: Subscriber | undefined;
}

/**
 * Subscribes while the component is mounted and returns `{ status, last, events, error,
 * reset }`. Changing `topics` (or `client`, `shareAcrossTabs`) resubscribes; callbacks
 * and `getToken` may change on every render without reconnecting.
 *
 * ```tsx
 * const { last, events, status } = useTopic<Order>('orders', { getToken, limit: 50 });
 * ```
 */
export function useTopic<T = unknown>(
  topics: string | readonly string[],
  options: UseTopicOptions<T> = {},
): TopicState<T> {
  const client = useClient<Subscriber>(options.client);
  const key = typeof topics === 'string' ? topics : topics.join('\n');
  const store = useMemo(
    () => new TopicStore<T>(client, typeof topics === 'string' ? topics : [...topics], options),
    // `topics` is compared by value through `key`; the other options are read live.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [client, key, options.shareAcrossTabs],
  );
  useEffect(() => {
    store.setOptions(options);
  });
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

/** What {@link useEndpoint} returns. */
export interface EndpointState<Res> {
  /** The latest answer. */
  readonly data: Res | undefined;
  /** The latest failure. */
  readonly error: PicloudError | undefined;
  /** True while a request is in flight. */
  readonly loading: boolean;
  /** Sends the request again. */
  readonly refetch: () => void;
}

/**
 * Calls a typed endpoint when the component mounts and again whenever `request`
 * changes (compared as JSON). Pass `enabled: false` to wait.
 */
export function useEndpoint<Req, Res>(
  endpoint: Endpoint<Req, Res>,
  request: Req,
  options: { client?: PicloudClient | undefined; enabled?: boolean | undefined } = {},
): EndpointState<Res> {
  const client = useClient(options.client);
  const enabled = options.enabled ?? true;
  const [attempt, setAttempt] = useState(0);
  // Which request (by value) and which refetch the answer below belongs to.
  const current = `${String(attempt)}:${(JSON.stringify(request) as string | undefined) ?? ''}`;
  const [answer, setAnswer] = useState<{
    for?: string;
    data?: Res;
    error?: PicloudError;
  }>({});

  useEffect(() => {
    if (!enabled) return;
    const controller = new AbortController();
    client.call(endpoint, request, { signal: controller.signal }).then(
      (data) => {
        if (!controller.signal.aborted) setAnswer({ for: current, data });
      },
      (error: unknown) => {
        if (controller.signal.aborted) return;
        const failure =
          error instanceof PicloudError
            ? error
            : new PicloudError(0, 'network_error', String(error), { cause: error });
        setAnswer((previous) => ({
          for: current,
          ...(previous.data === undefined ? {} : { data: previous.data }),
          error: failure,
        }));
      },
    );
    return () => {
      controller.abort();
    };
    // `request` is compared by value through `current`.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, endpoint, current, enabled]);

  const refetch = useCallback(() => {
    setAttempt((n) => n + 1);
  }, []);
  return {
    data: answer.data,
    error: answer.error,
    loading: enabled && answer.for !== current,
    refetch,
  };
}
