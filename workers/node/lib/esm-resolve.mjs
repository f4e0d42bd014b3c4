// ES module resolve hook (registered with module.register by loader.js): an
// app without its own `@azure/functions` gets the worker's copy, as CommonJS
// requires do (core.js). Its own copy always wins.

let fallbackParentUrl;

export async function initialize(data) {
    fallbackParentUrl = data && data.fallbackParentUrl;
}

export async function resolve(specifier, context, nextResolve) {
    try {
        return await nextResolve(specifier, context);
    } catch (err) {
        const ours = specifier === '@azure/functions' || specifier.startsWith('@azure/functions/');
        if (ours && fallbackParentUrl && err && err.code === 'ERR_MODULE_NOT_FOUND') {
            return nextResolve(specifier, { ...context, parentURL: fallbackParentUrl });
        }
        throw err;
    }
}
