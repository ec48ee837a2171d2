// Creates a blob container in Azurite (object_store cannot create containers).
// Idempotent: an existing container is fine. Retries while Azurite is still starting.
//
//   node deploy/azurite/create-container.mjs [container] [blob endpoint]
//   defaults: test, http://127.0.0.1:10000/devstoreaccount1
import { BlobServiceClient } from "@azure/storage-blob";

const container = process.argv[2] ?? "test";
const endpoint = (process.argv[3] ?? "http://127.0.0.1:10000/devstoreaccount1").replace(/\/+$/, "");
const account = "devstoreaccount1";
// Azurite's well-known development key (public, documented by Microsoft).
const key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const connectionString =
  `DefaultEndpointsProtocol=http;AccountName=${account};AccountKey=${key};BlobEndpoint=${endpoint};`;

const client = BlobServiceClient.fromConnectionString(connectionString, {
  retryOptions: { maxTries: 1 },
});
const deadline = Date.now() + 30_000;
for (;;) {
  try {
    const res = await client.getContainerClient(container).createIfNotExists();
    console.log(`container '${container}' ${res.succeeded ? "created" : "already exists"} at ${endpoint}`);
    break;
  } catch (err) {
    if (Date.now() > deadline) {
      console.error(`cannot create container '${container}' at ${endpoint}: ${err.message ?? err}`);
      process.exit(1);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
