import type { FastifyRequest } from 'fastify'
import createError from '@fastify/error'
import { detectImageType } from './media.js'

export const NotMultipart = createError('UNSUPPORTED_MEDIA_TYPE', 'Send the image as multipart/form-data', 415)
export const FileRequired = createError('FILE_REQUIRED', 'The request has no file part', 400)

/**
 * The single uploaded image of a multipart request, read whole (it is capped
 * at UPLOAD_MAX_BYTES by the multipart limits: beyond that, 413) and typed by
 * its magic bytes.
 */
export async function readImageUpload (request: FastifyRequest): Promise<{ data: Buffer, contentType: string }> {
  if (!request.isMultipart()) throw new NotMultipart()
  const file = await request.file()
  if (!file) throw new FileRequired()
  const data = await file.toBuffer()
  return { data, contentType: await detectImageType(data) }
}
