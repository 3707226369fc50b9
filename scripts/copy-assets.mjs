// Copies non-TS assets next to the compiled code (proto files are read from the package root).
import { cpSync, existsSync, mkdirSync } from 'node:fs';
const pairs = [['src/emulator/data', 'dist/src/emulator/data'], ['src/detect/defaults', 'dist/src/detect/defaults']];
for (const [from, to] of pairs) {
  if (existsSync(from)) {
    mkdirSync(to, { recursive: true });
    cpSync(from, to, { recursive: true });
  }
}
