// Bundles the web app (web/) with the SDK into dist/web: one JS file, its CSS
// and the page. Everything the browser loads comes from the server itself.
import { build } from 'esbuild'
import { copyFile, mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

export async function buildWebApp (outDir = join(root, 'dist', 'web')): Promise<string> {
  await mkdir(outDir, { recursive: true })
  await build({
    entryPoints: [join(root, 'web', 'main.ts')],
    outfile: join(outDir, 'app.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022'],
    minify: true,
    sourcemap: true,
    legalComments: 'none',
    logLevel: 'warning'
  })
  await Promise.all(['index.html', 'app.css'].map((file) => copyFile(join(root, 'web', file), join(outDir, file))))
  return outDir
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = await buildWebApp()
  console.log(`web app built into ${out}`)
}
