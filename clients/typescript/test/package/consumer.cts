// Type-checks a CommonJS consumer against the built package (dist/*.d.cts).
import picloud = require('@picloud/client');
import react = require('@picloud/client/react');
import svelte = require('@picloud/client/svelte');

const client = picloud.createClient({ baseUrl: 'http://localhost:8080', app: 'shop' });
const published: Promise<picloud.PublishedEvent> = client.publish('orders', { id: 1 });
export = { published, useTopic: react.useTopic, topicStore: svelte.topicStore };
