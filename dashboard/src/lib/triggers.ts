/** How a trigger is described to an admin: its name, its retry schedule, its circuit. */

import type { CircuitState, RetryPolicy, Trigger } from './api';
import { dateTime, duration } from './format';

/** Where a trigger delivers: the webhook's URL, or "script on_order". */
export function handlerName(handler: Trigger['handler']): string {
  return handler.kind === 'webhook' ? handler.url : `script ${handler.script}`;
}

/** What fires a trigger: "orders.*", "dead letters", "cron 0 9 * * 1-5 (Europe/Berlin)". */
export function sourceName(source: Trigger['source']): string {
  switch (source.kind) {
    case 'topic':
      return source.topic;
    case 'dead_letter':
      return 'dead letters';
    case 'cron':
      return `cron ${source.schedule} (${source.timezone ?? 'UTC'})`;
  }
}

/** A trigger's name: "orders.* → https://…", "dead letters → script on_dead". */
export function triggerName(trigger: Pick<Trigger, 'source' | 'handler'>): string {
  return `${sourceName(trigger.source)} → ${handlerName(trigger.handler)}`;
}

/** The name of the trigger `id` among `triggers`, or the id when it is not listed (deleted). */
export function triggerLabel(triggers: Trigger[], id: string): string {
  const trigger = triggers.find((t) => t.id === id);
  return trigger ? triggerName(trigger) : id;
}

/** A retry policy in words: "2 attempts: retried after 1 s", "1 attempt, no retries",
 * "8 attempts: retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h". */
export function retrySchedule(retry: RetryPolicy): string {
  const attempts = `${retry.max_attempts} attempt${retry.max_attempts === 1 ? '' : 's'}`;
  if (retry.schedule_secs.length === 0) return `${attempts}, no retries`;
  return `${attempts}: retried after ${retry.schedule_secs.map(duration).join(', ')}`;
}

/** What a circuit-breaker state means for deliveries, with when the next probe goes out. */
export function circuitMeaning(state: CircuitState, probeAt: number | null | undefined): string {
  switch (state) {
    case 'closed':
      return 'Deliveries go out normally.';
    case 'open':
      return (
        'Too many deliveries failed in a row, so deliveries to this URL are paused. ' +
        `One probe delivery is tried ${probeAt ? `at ${dateTime(probeAt)}` : 'after a cool-down'}; ` +
        'if it succeeds the waiting deliveries resume, if not the pause starts again.'
      );
    case 'half_open':
      return 'A probe delivery is being tried: if it succeeds the waiting deliveries resume, if not the circuit opens again.';
  }
}
