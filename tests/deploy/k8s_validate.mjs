// Validates Kubernetes objects against the OpenAPI schemas shipped by the npm packages
// kubernetes-models (built-in kinds) and @kubernetes-models/prometheus-operator
// (ServiceMonitor, PrometheusRule, ...). Offline: the schemas are in the packages.
//
//   node k8s_validate.mjs NODE_MODULES_DIR FILE.json
//
// FILE.json is a JSON array of objects (`yq -s . rendered.yaml`). Prints one line per object
// ("ok: Kind/name" or "FAIL: Kind/name: problems") and exits 1 when any object is invalid, has a
// field its schema does not know, or is of a kind with no schema here.
//
// Strict like `kubectl apply --validate=strict`: the packages' validators (compiled JSON Schema)
// ignore fields a schema does not list, so a typo such as `livenesProbe` or `replicaz` would
// pass. The validator runs on a Proxy of the object that records which property names it
// looks up: a validator of an object schema with `properties` looks up every property it knows
// (present or not), and one of a map (labels, ConfigMap data) enumerates the keys. A key of an
// object the validator looked into but neither looked up nor enumerated is unknown to the
// schema. Objects the schema leaves free-form are never looked into and are not judged.
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

const isPlainObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// watch(value, path, nodes): a Proxy of value recording the validator's look-ups in nodes
// (one {path, target, read: Set, enumerated} per plain object it reached).
function watch(value, path, nodes) {
  if (value === null || typeof value !== "object") return value;
  const node = { path, target: value, read: new Set(), enumerated: false };
  if (isPlainObject(value)) nodes.push(node);
  const children = new Map();
  const child = (key) => {
    if (!children.has(key)) children.set(key, watch(value[key], `${path}.${key}`, nodes));
    return children.get(key);
  };
  return new Proxy(value, {
    get(target, key, receiver) {
      if (typeof key !== "string") return Reflect.get(target, key, receiver);
      node.read.add(key);
      return Object.prototype.hasOwnProperty.call(target, key) ? child(key) : undefined;
    },
    has(target, key) {
      if (typeof key === "string") node.read.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      node.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
}

// The keys of obj its schema does not know, as paths ("spec.template.spec.containers.0.livenesProbe").
function unknownFields(Model, obj) {
  const nodes = [];
  const proxy = watch(obj, "", nodes);
  Model.prototype.validate.call(proxy);  // throws when invalid (checked before)
  const unknown = [];
  for (const n of nodes) {
    if (n.enumerated || n.read.size === 0) continue;  // a map, or free-form
    for (const key of Object.keys(n.target)) {
      if (!n.read.has(key)) unknown.push(`${n.path}.${key}`.replace(/^\./, ""));
    }
  }
  return unknown;
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
    // The packages' .js files are CommonJS: their exports are on the default export.
    const mod = await import(pathToFileURL(modulePath(obj.apiVersion, obj.kind)).href);
    Model = mod[obj.kind] ?? mod.default?.[obj.kind];
    if (typeof Model !== "function") throw new Error(`no class ${obj.kind} in its module`);
  } catch (e) {
    console.log(`FAIL: ${name}: no schema for ${obj.apiVersion} ${obj.kind} (${e.code ?? e.message})`);
    failed++;
    continue;
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    console.log(`FAIL: ${obj.apiVersion} ${name}: ${e.message}`);
    failed++;
    continue;
  }
  const unknown = unknownFields(Model, obj);
  if (unknown.length > 0) {
    console.log(`FAIL: ${obj.apiVersion} ${name}: unknown field ${unknown.map((u) => `"${u}"`).join(", ")}`);
    failed++;
    continue;
  }
  console.log(`ok: ${obj.apiVersion} ${name}`);
}
process.exit(failed ? 1 : 0);
