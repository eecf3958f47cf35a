// Uploading files into a dataset with the API key alone: presigned URLs from POST /v1/datasets/{name}/uploads,
// then PUT straight to the data bucket (a part at a time for big archives), then .../uploads/complete.
import {post, seg} from "./api.js";

const BATCH = 1000;  // files per uploads request (the API's limit)

function pathOf(file) {
  return (file.webkitRelativePath || file.name).replace(/^\/+/, "");
}

async function put(url, headers, body) {
  // The browser sets Content-Length itself (a forbidden header to set by hand); the signature still binds it.
  const sent = Object.fromEntries(Object.entries(headers || {}).filter(([name]) => name.toLowerCase() !== "content-length"));
  const response = await fetch(url, {method: "PUT", headers: sent, body});
  if (!response.ok) throw new Error(`the bucket refused ${response.status} ${response.statusText}`);
  return response.headers.get("ETag");
}

export async function uploadFiles(dataset, files, onProgress = () => {}) {
  const wanted = [...files].filter((file) => file.size > 0);
  let done = 0;
  for (let start = 0; start < wanted.length; start += BATCH) {
    const batch = wanted.slice(start, start + BATCH);
    const byPath = new Map(batch.map((file) => [pathOf(file), file]));
    const answer = await post(`/v1/datasets/${seg(dataset)}/uploads`, {
      files: batch.map((file) => ({path: pathOf(file), size: file.size, ...(file.type ? {content_type: file.type} : {})})),
    });
    for (const upload of answer.uploads) {
      const file = byPath.get(upload.path);
      if (upload.type === "multipart") {
        const parts = [];
        for (const part of upload.parts) {
          const offset = (part.part_number - 1) * upload.part_size;
          const etag = part.url ? await put(part.url, part.headers, file.slice(offset, offset + part.size)) : part.etag;
          parts.push({part_number: part.part_number, etag});
        }
        await post(answer.complete, {path: upload.path, upload_id: upload.upload_id, parts});
      } else {
        await put(upload.url, upload.headers, file);
      }
      done += 1;
      onProgress(done, wanted.length, upload.path);
    }
  }
  return done;
}
