/** Detection settings (owned by the detection work: src/detect/). */
import { bool, obj, str } from '../dsl.js';

export const detectSection = obj('Detection engine.', {
  enabled: bool('Run the detectors.', true),
  rules_file: str('Companion rules file (signals, detector settings, suppression). Empty: the built-in defaults.', null),
});
