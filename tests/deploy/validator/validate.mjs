// Validates Kubernetes objects offline and strictly: each against its kind's schema from
// kubernetes-models (core), @kubernetes-models/prometheus-operator and @kubernetes-models/keda,
// and with no field the schema does not name. The schemas allow unknown fields (Kubernetes'
// OpenAPI has no additionalProperties: false), so a misspelled field would pass: the object is
// handed to the schema's validator behind a Proxy that records which fields the validator
// looks up, and a field it never looked up, in an object whose fields it did look up, is
// unknown. Objects it enumerates (maps: labels, data) and objects it never opens (free-form)
// are left alone. Prints each problem, exits 1 if any.
//   node validate.mjs DIR OBJECTS.json
// DIR: where tools/setup.sh installed this folder's package-lock.json (its node_modules);
// OBJECTS.json: [{source, object}].
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [modulesDir, objectsFile] = process.argv.slice(2);

// apiVersion's group -> the package that has its models.
const packages = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "keda.sh": "@kubernetes-models/keda",
};

async function modelClass(apiVersion, kind) {
  if (!/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion)) return null;
  const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
  const pkg = packages[group] ?? "kubernetes-models";
  let mod;
  try {
    // By file: the packages live in DIR, not beside this script (so no bare specifiers).
    mod = await import(pathToFileURL(`${modulesDir}/node_modules/${pkg}/${apiVersion}/index.js`).href);
  } catch {
    return null;
  }
  return typeof mod[kind] === "function" ? mod[kind] : null;
}

// Wraps `value` so that every field lookup is recorded per object (by identity).
function tracker() {
  const records = new Map(); // object -> {path, gets: Set, enumerated}
  function wrap(value, path) {
    if (value === null || typeof value !== "object") return value;
    let rec = records.get(value);
    if (!rec) {
      rec = { path, gets: new Set(), enumerated: false, proxy: null };
      rec.proxy = new Proxy(value, {
        get(target, key) {
          if (typeof key !== "string") return target[key];
          rec.gets.add(key);
          return wrap(target[key], `${rec.path}/${key}`);
        },
        ownKeys(target) {
          rec.enumerated = true;
          return Reflect.ownKeys(target);
        },
      });
      records.set(value, rec);
    }
    return rec.proxy;
  }
  function unknownFields() {
    const out = [];
    for (const [value, rec] of records) {
      if (Array.isArray(value) || rec.enumerated || rec.gets.size === 0) continue;
      for (const key of Object.keys(value)) if (!rec.gets.has(key)) out.push(`${rec.path}/${key}`);
    }
    return out;
  }
  return { wrap, unknownFields };
}

const entries = JSON.parse(readFileSync(objectsFile, "utf8"));
let problems = 0;
for (const { source, object } of entries) {
  const where = `${source}: ${object?.kind}/${object?.metadata?.name}`;
  const say = (msg) => {
    console.log(`${where}: ${msg}`);
    problems++;
  };
  const cls = await modelClass(String(object?.apiVersion), String(object?.kind));
  if (!cls) {
    say(`no schema for apiVersion ${object?.apiVersion}, kind ${object?.kind}`);
    continue;
  }
  const t = tracker();
  try {
    cls.prototype.validate.call(t.wrap(object, ""));
  } catch (e) {
    say(`schema: ${e.message}`);
  }
  for (const path of t.unknownFields()) say(`unknown field ${path}`);
}
console.log(`${entries.length} objects: ${problems} problems`);
process.exit(problems ? 1 : 0);
