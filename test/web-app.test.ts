// The web app in a real browser: Chromium from the Debian packages, driven by
// playwright-core with that executable. Two people in two browser contexts;
// each reaches the server through a TCP relay of their own, so that going
// offline cuts their WebSocket too (Chromium's offline emulation alone leaves
// open WebSockets alone). Screenshots of the main screens are written to
// test-results/screenshots.
import t from 'tap'
import { mkdir, readdir, readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { crc32, deflateSync } from 'node:zlib'
import { chromium, type Browser, type Page } from 'playwright-core'
import { build } from './helper.js'
import { createUser } from './accounts.js'
import { listen } from './ws-client.js'
import { relay } from './relay.js'
import { codeIn } from './smtp.js'
import { ensureChromium } from '../scripts/embedded.js'

const shots = join(dirname(fileURLToPath(import.meta.url)), '..', 'test-results', 'screenshots')
/** A width × height RGB PNG with a colour gradient, to send as an image. */
function gradientPng (width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data])
    const length = Buffer.alloc(4)
    length.writeUInt32BE(data.length)
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(crc32(body))
    return Buffer.concat([length, body, crc])
  }
  const header = Buffer.alloc(13)
  header.writeUInt32BE(width, 0)
  header.writeUInt32BE(height, 4)
  header.set([8, 2, 0, 0, 0], 8) // 8-bit RGB
  const rows = Buffer.alloc((width * 3 + 1) * height)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) rows.set([40 + (180 * x) / width, 90 + (120 * y) / height, 210], y * (width * 3 + 1) + 1 + x * 3)
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))])
}
const png = gradientPng(160, 90)

async function mailedCode (dir: string, to: string): Promise<string> {
  const deadline = Date.now() + 15000
  while (Date.now() < deadline) {
    for (const file of (await readdir(dir).catch(() => [])).filter((f) => f.endsWith('.eml'))) {
      const raw = await readFile(join(dir, file), 'utf8')
      if (!raw.includes(to)) continue
      try {
        return codeIn({ to: [to], raw })
      } catch {
        // Still being written: look again.
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`no code mailed to ${to}`)
}

const messageItems = (page: Page, text: string) => page.locator('.messages .message .text', { hasText: text })

t.test('two people chat in Chromium: register with the mailed code, direct chat, image, edit, react, typing, read receipt, offline send, reload', async (t) => {
  const app = await build(t)
  const port = Number(new URL((await listen(app)).replace('ws', 'http')).port)
  const bob = await createUser(app, 'bob')
  const [adaNet, bobNet] = [await relay(port), await relay(port)]
  t.teardown(adaNet.close)
  t.teardown(bobNet.close)

  const browser: Browser = await chromium.launch({ executablePath: await ensureChromium(), args: ['--no-sandbox'] })
  t.teardown(() => browser.close())
  await mkdir(shots, { recursive: true })
  const adaContext = await browser.newContext({ viewport: { width: 1100, height: 700 } })
  const bobContext = await browser.newContext({ viewport: { width: 1100, height: 700 } })
  const ada = await adaContext.newPage()
  const bobPage = await bobContext.newPage()
  const pageErrors: string[] = []
  for (const page of [ada, bobPage]) page.on('pageerror', (err) => pageErrors.push(err.message))

  // Ada registers through the page; the code comes from the captured mail.
  await ada.goto(`${adaNet.url}/app/`)
  await ada.getByLabel('Email', { exact: true }).fill('ada@example.com')
  await ada.locator('form[aria-labelledby="register-title"]').getByLabel('Username').fill('ada_l')
  await ada.locator('form[aria-labelledby="register-title"]').getByLabel('Password').fill('correct horse battery staple')
  await ada.screenshot({ path: join(shots, '1-sign-in.png') })
  await ada.getByRole('button', { name: 'Send me a code' }).click()
  await ada.getByLabel('Code', { exact: true }).fill(await mailedCode(app.config.MAIL_CAPTURE_DIR, 'ada@example.com'))
  await ada.getByRole('button', { name: 'Verify and sign in' }).click()
  await ada.getByText('Signed in as ada_l').waitFor()

  // Bob signs in.
  await bobPage.goto(`${bobNet.url}/app/`)
  await bobPage.getByLabel('Email or username').fill(bob.username)
  await bobPage.locator('form[aria-labelledby="signin-title"]').getByLabel('Password').fill(bob.password)
  await bobPage.getByRole('button', { name: 'Sign in' }).click()
  await bobPage.getByText(`Signed in as ${bob.username}`).waitFor()

  // Ada starts a direct conversation and writes; Bob sees it in his list, unread, with its preview.
  await ada.getByPlaceholder('Username(s), comma-separated').fill(bob.username)
  await ada.getByRole('button', { name: 'Start conversation' }).click()
  await ada.getByLabel('Message', { exact: true }).fill('Hello Bob!')
  await ada.getByLabel('Message', { exact: true }).press('Enter')
  await messageItems(ada, 'Hello Bob!').waitFor()
  const entry = bobPage.locator('.conversations button', { hasText: 'Hello Bob!' })
  await entry.waitFor()
  t.equal(await entry.locator('.badge').textContent(), '1', 'unread badge')
  await bobPage.screenshot({ path: join(shots, '2-conversation-list.png') })

  // Bob opens it: Ada sees her message seen. Bob types: Ada sees it.
  await entry.click()
  await messageItems(bobPage, 'Hello Bob!').waitFor()
  await bobPage.locator('#chat-subtitle', { hasText: 'Online' }).waitFor()
  await ada.getByText(`Seen by ${bob.username}`).waitFor()
  t.equal(await entry.locator('.badge').count(), 0, 'read: no badge')
  await bobPage.getByLabel('Message', { exact: true }).pressSequentially('Hi Ad')
  await ada.getByText('is typing…').waitFor()

  // An image, an edit, a reaction.
  await ada.getByLabel('Attach an image').setInputFiles({ name: 'gradient.png', mimeType: 'image/png', buffer: png })
  await ada.getByRole('button', { name: 'Send', exact: true }).click()
  await bobPage.locator('.messages img[alt="Attached image"]').waitFor()
  t.equal(await bobPage.locator('.messages img[alt="Attached image"]').evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth), 160, 'the image loads (cookie-authenticated media)')
  await ada.locator('.message.mine', { hasText: 'Hello Bob!' }).getByRole('button', { name: 'Edit' }).click()
  await ada.getByLabel('Edit message').fill('Hello Bob, again!')
  await ada.getByRole('button', { name: 'Save' }).click()
  await messageItems(bobPage, 'Hello Bob, again!').waitFor()
  await bobPage.locator('.message', { hasText: 'Hello Bob, again!' }).getByRole('button', { name: 'React with thumbs up' }).click()
  await ada.locator('.message', { hasText: 'Hello Bob, again!' }).locator('.reactions', { hasText: '👍 1' }).waitFor()
  await bobPage.screenshot({ path: join(shots, '3-chat.png') })

  // Bob goes offline, writes, and comes back: the message arrives once.
  await bobContext.setOffline(true)
  bobNet.refuse(true)
  bobNet.cut()
  await bobPage.getByRole('status').filter({ hasText: 'Reconnecting' }).waitFor()
  await bobPage.getByLabel('Message', { exact: true }).fill('Written offline')
  await bobPage.getByLabel('Message', { exact: true }).press('Enter')
  await bobPage.locator('.message.pending', { hasText: 'Written offline' }).getByText('Sending…').waitFor()
  await bobPage.screenshot({ path: join(shots, '4-reconnecting.png') })
  await new Promise((resolve) => setTimeout(resolve, 1000))
  t.equal(await messageItems(ada, 'Written offline').count(), 0, 'not delivered while offline')
  await bobContext.setOffline(false)
  bobNet.refuse(false)
  await messageItems(ada, 'Written offline').waitFor({ timeout: 20000 })
  await bobPage.locator('.message.pending').waitFor({ state: 'detached' })
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(await messageItems(ada, 'Written offline').count(), 1, 'Ada sees it once')
  const conversationId = (await app.inject({ url: '/api/conversations', headers: bob.auth })).json().conversations[0].id as string
  const stored = (await app.inject({ url: `/api/conversations/${conversationId}/messages`, headers: bob.auth })).json().messages as Array<{ text: string | null }>
  t.equal(stored.filter((m) => m.text === 'Written offline').length, 1, 'stored once')

  // Ada deletes her image message; a reload keeps Bob's conversation.
  await ada.locator('.message.mine', { has: ada.locator('img') }).getByRole('button', { name: 'Delete' }).click()
  await bobPage.getByText('Message deleted').waitFor()
  await bobPage.reload()
  await bobPage.locator('.conversations button', { hasText: 'ada_l' }).click()
  await messageItems(bobPage, 'Written offline').waitFor()
  t.equal(await messageItems(bobPage, 'Hello Bob, again!').count(), 1, 'history after a reload')
  await ada.screenshot({ path: join(shots, '5-after-reload.png') })
  t.same(pageErrors, [], 'no script errors in either page')
  await adaContext.close()
  await bobContext.close()
})
