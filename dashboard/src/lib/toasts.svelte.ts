/** Short confirmations ("Topic created"), announced politely to screen readers. */

export interface Toast {
  id: number;
  text: string;
  kind: 'ok' | 'error';
}

let next = 1;

class Toasts {
  items = $state<Toast[]>([]);

  show(text: string, kind: Toast['kind'] = 'ok'): void {
    const id = next++;
    this.items.push({ id, text, kind });
    setTimeout(() => this.dismiss(id), 5000);
  }

  dismiss(id: number): void {
    this.items = this.items.filter((t) => t.id !== id);
  }
}

export const toasts = new Toasts();
