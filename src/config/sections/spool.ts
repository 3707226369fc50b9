/** Durable spool settings (owned by the spool work: src/store/). */
import { bool, obj } from '../dsl.js';

export const spoolSection = obj('Durable spool in the state directory (SQLite).', {
  enabled: bool('Keep accepted alerts on disk until delivered.', false),
});
