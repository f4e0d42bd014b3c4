'use strict';
// Loading an app's code: the entry point(s) named by package.json "main"
// (v4: they register their functions while they load) and, for apps of the v3
// model, each function's script file and entry point (FunctionLoadRequest).

const fs = require('fs');
const path = require('path');
const Module = require('module');
const { pathToFileURL } = require('url');
const { state, WORKER_DIR } = require('./core');

// ---- globs ---------------------------------------------------------------

/** 'a/{b,c}/d' -> ['a/b/d', 'a/c/d'] (nested braces allowed). */
function expandBraces(pattern) {
    let depth = 0;
    let start = -1;
    for (let i = 0; i < pattern.length; i++) {
        const c = pattern[i];
        if (c === '{') {
            if (depth === 0) start = i;
            depth++;
        } else if (c === '}' && depth > 0) {
            depth--;
            if (depth === 0) {
                const body = pattern.slice(start + 1, i);
                const parts = [];
                let d = 0;
                let from = 0;
                for (let j = 0; j < body.length; j++) {
                    if (body[j] === '{') d++;
                    else if (body[j] === '}') d--;
                    else if (body[j] === ',' && d === 0) {
                        parts.push(body.slice(from, j));
                        from = j + 1;
                    }
                }
                parts.push(body.slice(from));
                if (parts.length === 1) {
                    // '{x}' is literal in most glob dialects; keep it as written.
                    return expandBraces(pattern.slice(i + 1)).map((rest) => pattern.slice(0, i + 1) + rest);
                }
                const head = pattern.slice(0, start);
                const tails = expandBraces(pattern.slice(i + 1));
                const out = [];
                for (const part of parts) {
                    for (const expanded of expandBraces(part)) {
                        for (const tail of tails) out.push(head + expanded + tail);
                    }
                }
                return out;
            }
        }
    }
    return [pattern];
}

function segmentToRegex(segment) {
    let re = '';
    for (let i = 0; i < segment.length; i++) {
        const c = segment[i];
        if (c === '*') re += '[^/]*';
        else if (c === '?') re += '[^/]';
        else if (c === '[') {
            const end = segment.indexOf(']', i + 1);
            if (end < 0) {
                re += '\\[';
            } else {
                let cls = segment.slice(i + 1, end);
                if (cls.startsWith('!')) cls = '^' + cls.slice(1);
                re += `[${cls.replace(/\\/g, '\\\\')}]`;
                i = end;
            }
        } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
    }
    return re;
}

function globToRegex(pattern) {
    const segments = pattern.split('/');
    let re = '';
    segments.forEach((segment, i) => {
        const last = i === segments.length - 1;
        if (segment === '**') {
            re += last ? '.*' : '(?:[^/]+/)*';
        } else {
            re += segmentToRegex(segment) + (last ? '' : '/');
        }
    });
    return new RegExp(`^${re}$`);
}

const isGlob = (s) => /[*?[\]{}]/.test(s);

function walk(dir, relDir, out, allowNodeModules) {
    let entries;
    try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
        return;
    }
    for (const entry of entries) {
        const rel = relDir ? `${relDir}/${entry.name}` : entry.name;
        const full = path.join(dir, entry.name);
        let isDir = entry.isDirectory();
        let isFile = entry.isFile();
        if (entry.isSymbolicLink()) {
            try {
                const st = fs.statSync(full);
                isDir = st.isDirectory();
                isFile = st.isFile();
            } catch {
                continue;
            }
        }
        if (isDir) {
            if (entry.name === 'node_modules' && !allowNodeModules) continue;
            if (entry.name.startsWith('.')) continue;
            walk(full, rel, out, allowNodeModules);
        } else if (isFile) {
            out.push(rel);
        }
    }
}

/** The files under `baseDir` that `pattern` (relative, '/'-separated) names, sorted. */
function globFiles(baseDir, pattern) {
    const found = new Set();
    for (let expanded of expandBraces(pattern.replace(/\\/g, '/'))) {
        expanded = expanded.replace(/^\.\//, '');
        if (!isGlob(expanded)) {
            const full = path.resolve(baseDir, expanded);
            if (fs.existsSync(full) && fs.statSync(full).isFile()) found.add(full);
            continue;
        }
        // Walk from the longest literal directory prefix.
        const segments = expanded.split('/');
        const literal = [];
        while (segments.length > 1 && !isGlob(segments[0])) literal.push(segments.shift());
        const root = path.resolve(baseDir, ...literal);
        const regex = globToRegex(segments.join('/'));
        const files = [];
        walk(root, '', files, expanded.includes('node_modules'));
        for (const rel of files) {
            if (regex.test(rel)) found.add(path.join(root, ...rel.split('/')));
        }
    }
    return [...found].sort();
}

// ---- loading one file ----------------------------------------------------

function nearestPackageType(file) {
    let dir = path.dirname(file);
    for (;;) {
        const pkg = path.join(dir, 'package.json');
        if (fs.existsSync(pkg)) {
            try {
                return JSON.parse(fs.readFileSync(pkg, 'utf8')).type;
            } catch {
                return undefined;
            }
        }
        const parent = path.dirname(dir);
        if (parent === dir) return undefined;
        dir = parent;
    }
}

function isEsModule(file) {
    const ext = path.extname(file).toLowerCase();
    if (ext === '.mjs') return true;
    if (ext === '.cjs') return false;
    return nearestPackageType(file) === 'module';
}

let esmHooksRegistered = false;

/** Lets `import '@azure/functions'` in an app without its own copy find the worker's. */
function registerEsmHooks() {
    if (esmHooksRegistered) return;
    esmHooksRegistered = true;
    if (typeof Module.register !== 'function') return; // Node < 20.6: the app must have its own copy
    Module.register(pathToFileURL(path.join(__dirname, 'esm-resolve.mjs')).href, {
        data: { fallbackParentUrl: pathToFileURL(path.join(WORKER_DIR, 'worker.js')).href },
    });
}

/** Loads a script (CommonJS by require, an ES module by import) and returns its exports or namespace. */
async function loadScript(file) {
    if (isEsModule(file)) {
        registerEsmHooks();
        return { esm: true, exports: await import(pathToFileURL(file).href) };
    }
    return { esm: false, exports: require(file) };
}

// ---- the app's entry point (package.json "main") -------------------------

class EntryPointError extends Error {}

/** Reads package.json in `appDir`; {} when there is none. */
function readPackageJson(appDir) {
    const file = path.join(appDir, 'package.json');
    let text;
    try {
        text = fs.readFileSync(file, 'utf8');
    } catch (err) {
        if (err.code === 'ENOENT') return {};
        throw err;
    }
    try {
        return JSON.parse(text);
    } catch (err) {
        throw new EntryPointError(`${file} is not valid JSON: ${err.message}`);
    }
}

/**
 * Loads every file that package.json "main" names (a path or a glob) in
 * order. Functions registered meanwhile record the file as their scriptFile.
 * Returns the files loaded. Throws an Error naming the file that failed.
 */
async function loadEntryPoint(appDir) {
    const pkg = readPackageJson(appDir);
    const main = pkg.main;
    if (main === undefined || main === null || main === '') {
        return [];
    }
    if (typeof main !== 'string') {
        throw new EntryPointError('package.json "main" must be a string');
    }
    const files = globFiles(appDir, main);
    if (files.length === 0) {
        throw new EntryPointError(
            isGlob(main)
                ? `package.json "main" ("${main}") matches no file under ${appDir}`
                : `package.json "main" names "${main}", which does not exist under ${appDir}`
        );
    }
    for (const file of files) {
        state.currentFile = file;
        try {
            await loadScript(file);
        } catch (err) {
            const rel = path.relative(appDir, file) || file;
            const wrapped = new EntryPointError(
                `Worker was unable to load entry point "${rel}": ${err && err.message ? err.message : String(err)}`
            );
            wrapped.stack = `${wrapped.message}\n${err && err.stack ? err.stack : ''}`;
            wrapped.cause = err;
            throw wrapped;
        } finally {
            state.currentFile = undefined;
        }
    }
    return files;
}

// ---- v3 functions (FunctionLoadRequest) ----------------------------------

function describeExports(exportsObj) {
    const names = Object.keys(exportsObj || {});
    return names.length ? names.map((n) => `"${n}"`).join(', ') : 'none';
}

/**
 * Loads a v3-model function from its metadata (core shape). Returns the
 * callback; throws when the script or the entry point cannot be found.
 * The entry point is `entryPoint` if given, else the module itself when it
 * is a function, else its only exported function, else `run`, else `index`.
 */
async function loadLegacyFunction(metadata) {
    const name = metadata.name || metadata.functionId;
    if (!metadata.scriptFile) {
        throw new Error(`Function "${name}" has no script file`);
    }
    const scriptFile = path.resolve(metadata.directory || state.appDirectory, metadata.scriptFile);
    if (!fs.existsSync(scriptFile)) {
        throw new Error(`Function "${name}": script file ${scriptFile} does not exist`);
    }
    const loaded = await loadScript(scriptFile);
    let target = loaded.exports;
    const entryPoint = metadata.entryPoint;
    if (loaded.esm) {
        // An ES module's default export counts as "the module itself".
        if (!entryPoint && typeof target.default === 'function') {
            return target.default;
        }
        if (!entryPoint && target.default && typeof target.default === 'object') {
            target = { ...target, ...target.default };
            delete target.default;
        }
    }

    if (entryPoint) {
        const fn = target ? target[entryPoint] : undefined;
        if (typeof fn !== 'function') {
            throw new Error(
                `Function "${name}": ${scriptFile} exports no function named "${entryPoint}" (the entryPoint in function.json); its exports: ${describeExports(target)}`
            );
        }
        return fn.bind(target);
    }
    if (typeof target === 'function') {
        return target;
    }
    if (target && typeof target === 'object') {
        const functions = Object.keys(target).filter((k) => typeof target[k] === 'function');
        if (functions.length === 1) {
            return target[functions[0]].bind(target);
        }
        for (const conventional of ['run', 'index']) {
            if (typeof target[conventional] === 'function') {
                return target[conventional].bind(target);
            }
        }
    }
    throw new Error(
        `Function "${name}": cannot tell which export of ${scriptFile} is the function. Export a single function, ` +
            `name it "run" or "index", or set "entryPoint" in function.json. Its exports: ${describeExports(target)}`
    );
}

module.exports = { loadEntryPoint, loadLegacyFunction, globFiles, readPackageJson, EntryPointError };
