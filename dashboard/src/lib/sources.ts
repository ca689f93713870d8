/** How an outbox source is described to an admin: its relay's health in words. */

import type { Source } from './api';

/** The badge a source's relay gets, and what it means. */
export interface RelayHealth {
  label: string;
  /** The badge's class. */
  tone: 'ok' | 'bad' | 'pending' | 'muted-badge';
  meaning: string;
}

/** A source's relay health: stopped, connected, failing (its last error says why) or
 * starting (no node has picked it up yet). */
export function relayHealth(source: Pick<Source, 'enabled' | 'status'>): RelayHealth {
  const { status } = source;
  if (!source.enabled) {
    return { label: 'Stopped', tone: 'muted-badge', meaning: 'No relay runs: rows wait in the app\'s outbox until it is enabled again.' };
  }
  if (status.connected) {
    return { label: 'Connected', tone: 'ok', meaning: 'The relay is connected to the app\'s database and relays rows as they commit.' };
  }
  if (status.last_error) {
    return { label: 'Not connected', tone: 'bad', meaning: 'The relay cannot read the app\'s database and retries with back-off; rows wait in its outbox.' };
  }
  return { label: 'Starting', tone: 'pending', meaning: 'Waiting for a node to start its relay (within a second or so).' };
}
