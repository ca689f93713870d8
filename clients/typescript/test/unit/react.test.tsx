// @vitest-environment jsdom
import { act, cleanup, render, renderHook, screen } from '@testing-library/react';
import { StrictMode, type ReactNode } from 'react';
import { afterEach, describe, expect, it } from 'vitest';

import { createClient, endpoint, type PicloudEvent } from '../../src/index.js';
import { PicloudProvider, useEndpoint, useTopic } from '../../src/react.js';
import { FakeSubscriber } from '../support/fake-subscriber.js';
import { waitFor } from '../support/wait.js';

afterEach(cleanup);

function Orders(props: { client: FakeSubscriber; topics?: string[]; onEvent?: (e: PicloudEvent) => void }) {
  const { status, last, events } = useTopic(props.topics ?? ['orders'], {
    client: props.client,
    limit: 2,
    ...(props.onEvent ? { onEvent: props.onEvent } : {}),
  });
  return (
    <div>
      <p data-testid="status">{status}</p>
      <p data-testid="last">{last ? String(last.seq) : 'none'}</p>
      <ul>
        {events.map((e) => (
          <li key={e.cursor}>{e.seq}</li>
        ))}
      </ul>
    </div>
  );
}

const text = (id: string) => screen.getByTestId(id).textContent;
const listed = () => screen.queryAllByRole('listitem').map((li) => li.textContent);

describe('useTopic', () => {
  it('shows the status, the latest event and a bounded list of recent events', () => {
    const client = new FakeSubscriber();
    render(<Orders client={client} />);
    expect(text('status')).toBe('connecting');
    expect(text('last')).toBe('none');

    const [subscription] = client.live;
    act(() => {
      subscription!.options.onStatus?.('open');
      for (const seq of [1, 2, 3]) subscription!.emit(seq);
    });
    expect(text('status')).toBe('open');
    expect(text('last')).toBe('3');
    expect(listed()).toEqual(['2', '3']);
  });

  it('subscribes once while mounted and stops on unmount', async () => {
    const client = new FakeSubscriber();
    const { unmount } = render(<Orders client={client} />);
    expect(client.live).toHaveLength(1);
    unmount();
    await waitFor('subscription stopped', () => client.live.length === 0);
  });

  it('keeps one live subscription under StrictMode', async () => {
    const client = new FakeSubscriber();
    render(
      <StrictMode>
        <Orders client={client} />
      </StrictMode>,
    );
    await waitFor('settled', () => client.live.length === 1);
    expect(client.subscriptions).toHaveLength(1);
    act(() => {
      client.live[0]!.emit(7);
    });
    expect(text('last')).toBe('7');
  });

  it('resubscribes when the topics change, not when a callback does', async () => {
    const client = new FakeSubscriber();
    const seen: number[] = [];
    const { rerender } = render(<Orders client={client} onEvent={(e) => seen.push(e.seq)} />);
    rerender(<Orders client={client} onEvent={(e) => seen.push(e.seq * 10)} />);
    expect(client.subscriptions).toHaveLength(1);
    act(() => {
      client.live[0]!.emit(1);
    });
    expect(seen).toEqual([10]);

    rerender(<Orders client={client} topics={['invoices']} />);
    await waitFor('old subscription stopped', () => client.live.length === 1 && client.live[0]!.topics.includes('invoices'));
    expect(client.subscriptions[0]!.stopped).toBe(true);
  });

  it('takes the client from PicloudProvider', () => {
    const client = new FakeSubscriber();
    function Latest() {
      return <p data-testid="status">{useTopic('orders').status}</p>;
    }
    render(
      <PicloudProvider client={client as never}>
        <Latest />
      </PicloudProvider>,
    );
    expect(client.live.map((s) => s.topics)).toEqual(['orders']);
  });
});

describe('useEndpoint', () => {
  const getTopic = endpoint<{ topic: string }, { name: string; last_seq: number }>(
    'GET',
    '/v1/apps/{app}/topics/{topic}',
  );

  function fakeServer() {
    const requests: string[] = [];
    const fetch = (input: RequestInfo | URL): Promise<Response> => {
      const url = input instanceof Request ? input.url : input.toString();
      requests.push(url);
      const name = decodeURIComponent(url.split('/').pop() ?? '');
      if (name === 'missing') {
        return Promise.resolve(
          new Response(JSON.stringify({ error: { code: 'topic_not_found', message: "topic 'missing' not found" } }), {
            status: 404,
          }),
        );
      }
      return Promise.resolve(new Response(JSON.stringify({ name, last_seq: requests.length })));
    };
    const client = createClient({ baseUrl: 'http://picloud.test', app: 'shop', apiKey: 'pk_x', fetch });
    const wrapper = ({ children }: { children: ReactNode }) => <PicloudProvider client={client}>{children}</PicloudProvider>;
    return { requests, wrapper };
  }

  it('loads, then shows the answer', async () => {
    const { requests, wrapper } = fakeServer();
    const { result } = renderHook(() => useEndpoint(getTopic, { topic: 'orders' }), { wrapper });
    expect(result.current.loading).toBe(true);
    await waitFor('data', () => result.current.data);
    expect(result.current).toMatchObject({ data: { name: 'orders', last_seq: 1 }, loading: false });
    expect(requests).toEqual(['http://picloud.test/v1/apps/shop/topics/orders']);
  });

  it('shows a PicloudError', async () => {
    const { wrapper } = fakeServer();
    const { result } = renderHook(() => useEndpoint(getTopic, { topic: 'missing' }), { wrapper });
    await waitFor('error', () => result.current.error);
    expect(result.current.error).toMatchObject({ status: 404, code: 'topic_not_found' });
    expect(result.current.loading).toBe(false);
  });

  it('asks again when the request changes by value or on refetch, not on a new equal object', async () => {
    const { requests, wrapper } = fakeServer();
    const { result, rerender } = renderHook((props: { topic: string }) => useEndpoint(getTopic, { topic: props.topic }), {
      wrapper,
      initialProps: { topic: 'a' },
    });
    await waitFor('first answer', () => result.current.data);
    rerender({ topic: 'a' });
    rerender({ topic: 'b' });
    await waitFor('answer for b', () => result.current.data?.name === 'b');
    act(() => {
      result.current.refetch();
    });
    await waitFor('refetched', () => result.current.data?.last_seq === 3);
    expect(requests.map((u) => u.split('/').pop())).toEqual(['a', 'b', 'b']);
  });

  it('waits while disabled', () => {
    const { requests, wrapper } = fakeServer();
    const { result } = renderHook(() => useEndpoint(getTopic, { topic: 'a' }, { enabled: false }), { wrapper });
    expect(result.current.loading).toBe(false);
    expect(requests).toEqual([]);
  });
});
