import escapeHtml from 'escape-html'
import type { EmailJob } from './mail.js'

function layout (title: string, paragraphs: string[], code?: string): Pick<EmailJob, 'text' | 'html'> {
  const text = [title, '', ...paragraphs, ...(code ? ['', `Your code: ${code}`, '', 'It expires in 5 minutes. If you did not ask for it, ignore this mail.'] : [])].join('\n')
  const html = `<!doctype html><html><body style="font-family:sans-serif;max-width:480px;margin:auto">
<h2>${escapeHtml(title)}</h2>
${paragraphs.map((p) => `<p>${escapeHtml(p)}</p>`).join('\n')}
${code ? `<p style="font-size:28px;letter-spacing:6px;font-weight:bold">${escapeHtml(code)}</p><p>It expires in 5 minutes. If you did not ask for it, ignore this mail.</p>` : ''}
</body></html>`
  return { text, html }
}

export function registrationCodeMail (to: string, username: string, code: string): EmailJob {
  return { to, subject: 'Your Parley verification code', ...layout(`Welcome to Parley, ${username}!`, ['Confirm your email address with this code to finish signing up.'], code) }
}

export function alreadyRegisteredMail (to: string): EmailJob {
  return {
    to,
    subject: 'You already have a Parley account',
    ...layout('You already have an account', [
      'Someone (hopefully you) tried to sign up for Parley with this email address, but it already has an account.',
      'Sign in instead, or reset your password if you forgot it. If this was not you, no action is needed.'
    ])
  }
}

export function passwordResetCodeMail (to: string, username: string, code: string): EmailJob {
  return { to, subject: 'Your Parley password reset code', ...layout(`Hello ${username},`, ['Use this code to choose a new password for your Parley account.'], code) }
}
