import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // There is no `vscode` module outside VS Code: tests get a small fake of the API.
    alias: { vscode: fileURLToPath(new URL('./test/vscode.mock.ts', import.meta.url)) },
  },
  test: { include: ['test/**/*.test.ts'], environment: 'node' },
});
