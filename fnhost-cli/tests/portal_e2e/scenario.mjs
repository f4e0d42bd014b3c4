// The portal end to end in headless Chromium (Debian's), driven by
// playwright-core with executablePath: nothing downloads a browser.
// Run by fnhost-cli/tests/portal_e2e.rs, which starts `fnhost manage` and
// passes what this needs in the environment.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env("PORTAL_BASE");
const MODULES = env("PORTAL_E2E_MODULES");
const require = createRequire(path.join(MODULES, "node_modules") + "/");
const { chromium } = require("playwright-core");
const axeSource = fs.readFileSync(path.join(MODULES, "node_modules/axe-core/axe.min.js"), "utf8");
const shots = env("PORTAL_SCREENSHOTS");
fs.mkdirSync(shots, { recursive: true });

const context = await chromium.launchPersistentContext(env("PORTAL_USER_DATA"), {
  executablePath: env("PORTAL_CHROMIUM"),
  headless: true,
  acceptDownloads: true,
  viewport: { width: 1280, height: 860 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(20000);
page.on("dialog", (d) => d.accept());
const problems = [];
const cspErrors = [];
page.on("console", (m) => { if (m.type() === "error") cspErrors.push(m.text()); });

const step = (s) => console.log(`-- ${s}`);
const expectText = async (selector, text) => {
  await page.locator(selector).filter({ hasText: text }).first().waitFor();
};
async function a11y(name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document);
    return {
      passes: r.passes.length,
      violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 3) })),
    };
  });
  // axe ran: it passed rules on the page (an empty result means nothing).
  if (result.passes === 0) problems.push(`${name}: axe checked nothing`);
  const violations = result.violations;
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  console.log(`axe ${name}: ${result.passes} rules passed, ${violations.length} violation(s) (${violations.map((v) => v.id).join(", ")}), ${bad.length} serious or critical`);
  for (const v of bad) problems.push(`${name}: ${v.impact} ${v.id} at ${v.nodes.join(", ")}`);
}
const shot = (name, fullPage = false) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage });
const go = async (p) => { await page.goto(BASE + p); };
const app = "/portal/apps/shop/production";

step("a new user signs in");
await go("/");
await page.waitForURL(/\/portal\/login/);
await a11y("login");
await page.fill("#user", env("PORTAL_USER"));
await page.fill("#password", env("PORTAL_PASSWORD"));
await page.click("button:has-text('Sign in')");
await expectText("h1", "Apps");
await a11y("apps");

step("creates an app");
await page.fill("#new-app", "shop");
await page.click("button:has-text('Create app')");
await expectText(".flash", "App shop created.");
await a11y("functions (empty)");

step("adds an HTTP function from a template");
await page.click("a:has-text('New function')");
await a11y("new function");
await page.selectOption("#template", "http");
await page.fill("#fn-name", "Hello");
await page.selectOption("#runtime", "node-v3");
await page.click("button:has-text('Create function')");
await expectText(".flash", "Function Hello added");

step("edits it");
const code = `module.exports = async function (context, req) {
    context.log("portal e2e log line for " + (req.query.name || "nobody"));
    context.res = { status: 200, body: "Hi from the portal, " + (req.query.name || "nobody") };
};
`;
await page.fill("#content", code);
await page.click("button:has-text('Save (a new deployment)')");
await expectText(".flash", "Saved Hello/index.js as deployment");
await a11y("code");

step("tests it and sees its log");
await page.fill("#run-query", "name=e2e");
await page.click("button:has-text('Run')");
await expectText("[data-test=run-body]", "Hi from the portal, e2e");
await expectText("[data-test=run-logs]", "portal e2e log line for e2e");
await a11y("code + test/run");
await shot("code-test", true);

step("the other pages");
await go(`${app}/functions`);
await expectText("td", "httpTrigger");
await shot("functions");
for (const [name, p] of [["integration", "/code?function=Hello&path=Hello%2Ffunction.json"], ["files", "/files"], ["keys", "/keys"], ["settings", "/settings"], ["monitor", "/monitor"], ["log stream", "/logstream"], ["download", "/download"], ["deployments", "/deployments"]]) {
  await go(app + p);
  await a11y(name);
}
await go(`${app}/keys`);
await page.locator("button.reveal").first().click();
await page.locator("button.reveal:has-text('Hide')").first().waitFor();
await shot("keys");
await go(`${app}/logstream`);
await expectText("[data-test=stream-state]", "connected");
await expectText("#logstream", "invocation");
await shot("log-stream");

step("sets the deployment credentials");
await go(`${app}/credentials`);
await page.fill("#cred-user", "deployer");
await page.fill("#cred-password", "deploy-pass-1");
await page.click("button:has-text('Set credentials')");
await expectText(".flash", "deployment credentials are set");
await a11y("credentials");

step("connects a git source (the built-in repository) in the Deployment Center");
await go(`${app}/center`);
await a11y("deployment center (steps)");
await page.check("#src-local-git");
await page.check("#b-none");
await page.click("button:has-text('5. Review the summary')");
await expectText("h2", "5. Summary");
await a11y("deployment center (summary)");
await page.click("button:has-text('6. Finish')");
await expectText("[data-test=connected]", "local-git");
const pushUrl = (await page.locator("p:has-text('Push to') code").textContent()).trim();

step("pushes and sees the push deploy");
const repo = env("PORTAL_GIT_REPO");
const authed = pushUrl.replace("://", "://deployer:deploy-pass-1@");
execFileSync("git", ["-C", repo, "push", "-q", authed, "HEAD:main"], { stdio: "inherit" });
await go(`${app}/center`);
await expectText("table", "pushed from git");
await a11y("deployment center (connected)");
await shot("deployment-center");
await go(`${app}/deployments`);
await expectText("tr.active", "pushed from git");

step("rolls back");
await page.click("button:has-text('Roll back to the previous deployment')");
await expectText(".flash", "is active");
await page.locator("tr.active").filter({ hasNotText: "pushed from git" }).first().waitFor();
await shot("deployments");
await page.click("tbody a >> nth=0");
await expectText("[data-test=deployment-log]", "Validated");
await a11y("deployment log");

step("a read-only app refuses edits with the reason");
await go(`${app}/code?function=Hello`);
await expectText("[data-test=read-only]", "continuous deployment");
if (await page.locator("button:has-text('Save (a new deployment)')").count() !== 0) problems.push("read-only: a Save button is offered");
if (!(await page.locator("#content").getAttribute("readonly") !== null)) problems.push("read-only: the editor is writable");
const refused = await page.evaluate(async (url) => {
  const r = await fetch(url, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "path=Hello%2Findex.js&content=x" });
  return [r.status, await r.text()];
}, `${app}/code`);
if (refused[0] !== 409 || !refused[1].includes("continuous deployment")) problems.push(`read-only: a save was answered ${refused[0]}`);
await shot("read-only");
await a11y("read-only code");

step("downloads the content");
await go(`${app}/download`);
const [download] = await Promise.all([
  page.waitForEvent("download"),
  page.click("button:has-text('Download')"),
]);
const zip = fs.readFileSync(await download.path());
if (zip.subarray(0, 2).toString() !== "PK") problems.push("download: not a zip");
console.log(`download: ${download.suggestedFilename()} ${zip.length} bytes`);

step("sees the cluster's workers and makes a join token");
await go("/portal/workers");
await expectText("[data-test=workers] td", "desk-1");
await a11y("workers");
await page.click("button:has-text('New join token')");
const token = (await page.locator("[data-test=join-token]").textContent()).trim();
if (!/^[0-9a-f]{64}$/.test(token)) problems.push(`workers: the join token is ${token}`);
await a11y("workers (new join token)");

step("scales the app onto the workers");
await go(`${app}/placement`);
await expectText("[data-test=scale]", "Not placed on workers");
await a11y("placement");
await page.selectOption("#scale-mode", "instances");
await page.fill("#scale-instances", "1");
await page.click("button:has-text('Scale')");
await expectText(".flash", "1 instance(s)");
await expectText("[data-test=scale]", "1 instance(s)");
// The leader places it within a second.
for (let i = 0; i < 40 && (await page.locator("[data-test=instances] td", { hasText: "desk-1" }).count()) === 0; i++) {
  await page.waitForTimeout(250);
  await page.reload();
}
await expectText("[data-test=instances] td", "desk-1");
await shot("placement");
await a11y("placement (placed)");

step("drains the worker");
await go("/portal/workers");
await expectText("[data-test=placements] td", "shop");
await shot("workers");
await page.click("button:has-text('Drain')");
await expectText(".flash", "drains at its next heartbeat");
await expectText("[data-test=workers] td", "draining");

await go("/portal/");
await shot("apps");
step("signs out");
await page.click("button:has-text('Sign out')");
await page.waitForURL(/\/portal\/login/);
await context.close();

const csp = cspErrors.filter((e) => /Content Security Policy/i.test(e));
for (const e of csp) problems.push(`CSP: ${e}`);
if (problems.length) {
  console.error("FAILED:\n" + problems.join("\n"));
  process.exit(1);
}
console.log("portal e2e: all steps passed");
