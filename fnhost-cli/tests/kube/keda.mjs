// Validates KEDA ScaledObjects (a JSON array on stdin) against KEDA's
// schema as published in @kubernetes-models/keda (generated from KEDA's
// Go types). Prints one line per object; exits 1 when any is invalid.
// Usage: node keda.mjs MODELS_DIR < objects.json
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const dir = process.argv[2];
const file = join(dir, "node_modules/@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject.js");
const { ScaledObject } = await import(pathToFileURL(file).href);
const objects = JSON.parse(readFileSync(0, "utf8"));
let bad = 0;
for (const o of objects) {
  try {
    new ScaledObject(o).validate();
    console.log(`ok ScaledObject ${o.metadata.name} (KEDA schema)`);
  } catch (e) {
    bad++;
    console.log(`INVALID ScaledObject ${o.metadata && o.metadata.name}: ${e.message}`);
  }
}
process.exit(bad ? 1 : 0);
