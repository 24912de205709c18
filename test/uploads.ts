/** A multipart/form-data body with one file part named `file`, as the upload routes take it. */
export function multipart (filename: string, contentType: string, data: Buffer): { payload: Buffer, headers: Record<string, string> } {
  const boundary = '----parleytest'
  const payload = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: ${contentType}\r\n\r\n`),
    data,
    Buffer.from(`\r\n--${boundary}--\r\n`)
  ])
  return { payload, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } }
}
