// Type-checks an ES module consumer against the built package (dist/*.d.ts).
import { createClient, endpoint, PicloudError, type PicloudEvent, type WireSchema } from '@picloud/client';
import { useTopic } from '@picloud/client/react';
import { topicStore } from '@picloud/client/svelte';

const client = createClient({ baseUrl: 'http://localhost:8080', app: 'shop' });
const stop: () => void = client.subscribe<{ id: number }>('orders', {
  onEvent: (event: PicloudEvent<{ id: number }>) => event.data.id.toFixed(),
});
const ep = endpoint<{ topic: string }, { name: string }>('GET', '/v1/apps/{app}/topics/{topic}');
const name: Promise<{ name: string }> = client.call(ep, { topic: 'orders' });
const getTrigger = endpoint<{ trigger_id: string }, WireSchema<'Trigger'>>('GET', '/v1/apps/{app}/triggers/{trigger_id}');
const url: Promise<string> = client.call(getTrigger, { trigger_id: 'trg_1' }).then((t) => (t.handler.kind === 'webhook' ? t.handler.url : t.handler.script));
const health = endpoint<void, unknown>('GET', '/healthz');
const ok: Promise<unknown> = client.call(health);
export { stop, name, url, ok, PicloudError, useTopic, topicStore };
