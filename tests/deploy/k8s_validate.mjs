// Validates Kubernetes objects against the OpenAPI schemas shipped by the npm packages
// kubernetes-models (built-in kinds) and @kubernetes-models/prometheus-operator
// (ServiceMonitor, PrometheusRule, ...). Offline: the schemas are in the packages.
//
//   node k8s_validate.mjs NODE_MODULES_DIR FILE.json
//
// FILE.json is a JSON array of objects (`yq -s . rendered.yaml`). Prints one line per object
// ("ok: Kind/name" or "FAIL: Kind/name: problems") and exits 1 when any object is invalid or of
// a kind with no schema here.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [modules, file] = process.argv.slice(2);
if (!modules || !file) {
  console.error("usage: node k8s_validate.mjs NODE_MODULES_DIR FILE.json");
  process.exit(2);
}

// apiVersion "apps/v1" -> "kubernetes-models/apps/v1/Deployment"; core "v1" -> "kubernetes-models/v1/X".
function modulePath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const pkg = group.endsWith("coreos.com") ? "@kubernetes-models/prometheus-operator" : "kubernetes-models";
  const parts = group ? [pkg, group, version, `${kind}.js`] : [pkg, version, `${kind}.js`];
  return join(modules, ...parts);
}

const objects = JSON.parse(readFileSync(file, "utf8"));
if (!Array.isArray(objects) || objects.length === 0) {
  console.error(`FAIL: ${file} holds no objects`);
  process.exit(1);
}
let failed = 0;
for (const obj of objects) {
  const name = `${obj?.kind}/${obj?.metadata?.name}`;
  if (typeof obj?.apiVersion !== "string" || typeof obj?.kind !== "string") {
    console.log(`FAIL: ${name}: no apiVersion or kind`);
    failed++;
    continue;
  }
  let Model;
  try {
    Model = (await import(pathToFileURL(modulePath(obj.apiVersion, obj.kind)).href))[obj.kind];
  } catch (e) {
    console.log(`FAIL: ${name}: no schema for ${obj.apiVersion} ${obj.kind} (${e.code ?? e.message})`);
    failed++;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`ok: ${obj.apiVersion} ${name}`);
  } catch (e) {
    console.log(`FAIL: ${obj.apiVersion} ${name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
