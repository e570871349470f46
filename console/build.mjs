// Builds the console page into fleetmind/serve/console_static/ (the files the Python package
// ships), stamping each built file with a hash of its sources so that a test can tell, without
// Node, that the committed build matches console/src.
//
//   npm ci && npm run build      (or scripts/build_console.sh)

import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, "..", "fleetmind", "serve", "console_static");
const STAMP = "fleetmind-console-source";

/** The files whose content decides the build: src/*, this script and the locked dependencies. */
async function sourceFiles() {
  const names = (await readdir(path.join(here, "src"))).map((name) => `src/${name}`);
  return [...names, "build.mjs", "package-lock.json"].sort();
}

/** sha256 over `path NUL content NUL` for each source file in order (line ends made LF). */
async function sourceHash() {
  const hash = createHash("sha256");
  for (const name of await sourceFiles()) {
    const text = (await readFile(path.join(here, name), "utf8")).replaceAll("\r\n", "\n");
    hash.update(`${name}\0${text}\0`, "utf8");
  }
  return hash.digest("hex");
}

/** Bundle one entry point: `{name: text}` for the script and, when its libraries have
 * licence notices, a `NAME.LEGAL.txt` beside it (so the script itself names no URL). */
async function bundle(entry, name) {
  const result = await esbuild.build({
    entryPoints: [path.join(here, "src", entry)],
    outfile: path.join(out, name),
    bundle: true,
    minify: process.env.FLEETMIND_CONSOLE_DEV !== "1",
    format: "iife",
    target: ["es2020"],
    legalComments: "linked",
    write: false,
  });
  return Object.fromEntries(result.outputFiles.map((file) => [path.basename(file.path), file.text]));
}

async function main() {
  const hash = await sourceHash();
  const note = `${STAMP}: ${hash} (built from console/src by console/build.mjs; do not edit)`;
  const scripts = { ...(await bundle("main.js", "console.js")), ...(await bundle("layout_worker.js", "layout_worker.js")) };
  const licence = await readFile(path.join(here, "node_modules", "cytoscape", "LICENSE"), "utf8");
  scripts["console.js.LEGAL.txt"] = `cytoscape (MIT licence):\n\n${licence}\n${scripts["console.js.LEGAL.txt"] ?? ""}`;
  const files = {
    ...Object.fromEntries(Object.entries(scripts).map(([name, text]) => [name, `/* ${note} */\n${text}`])),
    "console.css": `/* ${note} */\n${await readFile(path.join(here, "src", "console.css"), "utf8")}`,
    "favicon.svg": await readFile(path.join(here, "src", "favicon.svg"), "utf8"),
    "index.html": (await readFile(path.join(here, "src", "index.html"), "utf8")).replace(
      "<!doctype html>\n",
      `<!doctype html>\n<!-- ${note} -->\n`,
    ),
  };
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    await writeFile(path.join(out, name), text.replaceAll("\r\n", "\n"));
    console.log(`${name.padEnd(18)} ${(Buffer.byteLength(text) / 1024).toFixed(1)} KiB`);
  }
  console.log(`source hash ${hash}`);
}

await main();
