/**
 * Hash routing under /_/: `#/apps` and `#/apps/{app}/{tab}`. The server serves the same
 * page for any path under /_/, and the hash keeps every page linkable and bookmarkable.
 */

export const TABS = [
  { id: 'overview', label: 'Overview' },
  { id: 'topics', label: 'Topics' },
  { id: 'tail', label: 'Live tail' },
  { id: 'sources', label: 'Sources' },
  { id: 'scripts', label: 'Scripts' },
  { id: 'triggers', label: 'Triggers' },
  { id: 'deliveries', label: 'Deliveries' },
  { id: 'dead-letters', label: 'Dead letters' },
  { id: 'keys', label: 'Keys' },
] as const;

export type TabId = (typeof TABS)[number]['id'];

export type Route = { page: 'apps' } | { page: 'app'; app: string; tab: TabId };

/** Parses a location hash. Unknown hashes go to the app list. */
export function parseHash(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'apps' && parts[1]) {
    const tab = TABS.find((t) => t.id === parts[2])?.id ?? 'overview';
    return { page: 'app', app: parts[1], tab };
  }
  return { page: 'apps' };
}

/** The hash of a route. */
export function href(route: Route): string {
  return route.page === 'apps' ? '#/apps' : `#/apps/${encodeURIComponent(route.app)}/${route.tab}`;
}

class Router {
  route = $state<Route>(parseHash(globalThis.location?.hash ?? ''));

  constructor() {
    globalThis.addEventListener?.('hashchange', () => {
      this.route = parseHash(globalThis.location.hash);
    });
  }

  go(route: Route): void {
    globalThis.location.hash = href(route);
    this.route = route;
  }
}

export const router = new Router();
