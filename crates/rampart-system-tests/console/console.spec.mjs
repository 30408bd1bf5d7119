// The web console in a real browser: Playwright's core (pinned in package.json) drives Debian's
// headless Chromium against a running `rampart server` with a simulated fleet (a viewer's open
// campaign page also follows an operator's pause and resume live). Started by
// crates/rampart-system-tests/tests/console.rs, which passes a JSON file:
//   {"base": "https://127.0.0.1:PORT", "viewer": TOKEN, "operator": TOKEN, "auditor": TOKEN,
//    "campaign": ID, "incident": ID, "release": TARGET, "fixRelease": TARGET, "advisory": ID,
//    "markupDevice": ID, "markup": {"hardware": TEXT, "attribute": TEXT, "message": TEXT},
//    "screenshots": DIR}
// Every check throws on failure; the process exits non-zero and says which check failed.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const CHROMIUM = '/usr/bin/chromium';
const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { base, screenshots } = config;

if (!fs.existsSync(CHROMIUM)) {
  throw new Error(`${CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does)`);
}
fs.mkdirSync(screenshots, { recursive: true });

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // Root in a container has no user namespaces for Chromium's sandbox.
  args: ['--no-sandbox'],
});

let step = 'starting';
const log = (what) => {
  step = what;
  console.log(`- ${what}`);
};

/** A browser context (its own cookies) that records dialogs, page errors and CSP reports. */
async function context() {
  // The server's certificate is from the test's own CA.
  const ctx = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 900 },
  });
  // Every wait is on a state with a generous bound: on a busy 2-core machine a page or a
  // server answer can take many seconds, and Playwright's 30 s default then fails a good run.
  ctx.setDefaultTimeout(120000);
  ctx.setDefaultNavigationTimeout(120000);
  const page = await ctx.newPage();
  const problems = [];
  page.on('dialog', async (dialog) => {
    problems.push(`a dialog opened: ${dialog.message()}`);
    await dialog.dismiss();
  });
  page.on('pageerror', (error) => problems.push(`a script error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  return { ctx, page, problems };
}

/** Fails if the page ran injected script, created injected elements or broke the policy. */
async function assertInert(page, problems, where) {
  const pwned = await page.evaluate(() => window.pwned);
  assert.equal(pwned, undefined, `${where}: injected script ran`);
  const injected = await page.evaluate(() => ({
    images: document.querySelectorAll('img').length,
    bold: document.querySelectorAll('b').length,
    scripts: [...document.scripts].map((s) => s.src),
  }));
  assert.equal(injected.images, 0, `${where}: an injected <img> element exists`);
  assert.equal(injected.bold, 0, `${where}: an injected <b> element exists`);
  assert.equal(injected.scripts.length, 1, `${where}: scripts ${injected.scripts}`);
  assert.match(injected.scripts[0], /\/console\/assets\/console-[0-9a-f]{16}\.js$/);
  assert.deepEqual(problems, [], `${where}: dialogs, script errors or policy violations`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(screenshots, `${name}.png`), fullPage: true });
}

async function login(page, token) {
  await page.goto(`${base}/console/login`);
  await page.fill('#token', token);
  await Promise.all([page.waitForURL(`${base}/console/fleet`), page.click('button[type=submit]')]);
}

/** The rows of the fleet page's device table: [{id, hardware, ...}]. */
async function rows(page) {
  return page.$$eval('#devices tbody tr', (trs) =>
    trs.map((tr) => {
      const cells = [...tr.querySelectorAll('td')].map((td) => td.textContent.trim());
      return { id: tr.dataset.device, hardware: cells[1], version: cells[2], region: cells[4], status: cells[5] };
    }),
  );
}

/** The count the fleet page shows for `value` in the counts table `key`. */
async function countOf(page, key, value) {
  const found = await page.$$eval(
    `table[data-count="${key}"] tr`,
    (trs, value) => {
      for (const tr of trs) {
        const cells = tr.querySelectorAll('td');
        if (cells[0].textContent.trim() === value) return Number(cells[1].textContent);
      }
      return null;
    },
    value,
  );
  assert.notEqual(found, null, `no ${key} count for ${value}`);
  return found;
}

try {
  // ---- a viewer ---------------------------------------------------------------------------
  const viewer = await context();
  let page = viewer.page;
  log('the login page loads');
  await page.goto(`${base}/console/fleet`);
  assert.equal(page.url(), `${base}/console/login`, 'without a session, pages lead to the login');
  await shot(page, 'login');
  log('a wrong token is refused on the login page');
  await page.fill('#token', 'rampart_not_a_token');
  await page.click('button[type=submit]');
  await page.waitForSelector('.error');
  assert.match(await page.textContent('.error'), /unknown or revoked/);
  // The browser logs that refusal (401) as a failed resource: expected here, and only here.
  viewer.problems.length = 0;
  log('the viewer logs in');
  await login(page, config.viewer);
  const cookies = await viewer.ctx.cookies();
  const session = cookies.find((c) => c.name === '__Host-rampart_console');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.secure, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(session.path, '/');
  assert.equal(await page.evaluate(() => document.cookie), '', 'no script can read the cookie');
  assert.ok(!page.url().includes(config.viewer), 'the token is never in a URL');

  log('the fleet page shows counts and devices');
  const total = Number(await page.textContent('main > p strong'));
  assert.ok(total >= config.devices, `${total} devices shown, ${config.devices} expected`);
  await assertInert(page, viewer.problems, 'fleet');
  await shot(page, 'fleet');

  log('the hardware filter keeps only that hardware');
  const boardB = await countOf(page, 'hardware', 'board-b');
  assert.ok(boardB > 0, 'the simulated fleet has board-b devices');
  await Promise.all([
    page.waitForURL(/hardware=board-b/),
    page.selectOption('select[name=hardware]', 'board-b'),
  ]);
  let shown = await rows(page);
  assert.equal(shown.length, Math.min(boardB, 50));
  assert.ok(shown.every((r) => r.hardware === 'board-b'), JSON.stringify(shown));
  await shot(page, 'fleet-filtered');

  log('the search and the region filter narrow it further');
  const euB = (await rows(page)).filter((r) => r.region === 'eu').map((r) => r.id);
  await Promise.all([
    page.waitForURL(/region=eu/),
    page.selectOption('select[name=region]', 'eu'),
  ]);
  shown = await rows(page);
  assert.deepEqual(shown.map((r) => r.id), euB);
  await page.fill('input[name=q]', config.markupDevice.toUpperCase());
  await Promise.all([page.waitForURL(/q=/), page.press('input[name=q]', 'Enter')]);
  assert.equal((await rows(page)).length, 0, 'the markup device is not a board-b device in eu');
  await page.goto(`${base}/console/fleet?q=${encodeURIComponent(config.markupDevice)}`);
  shown = await rows(page);
  assert.deepEqual(shown.map((r) => r.id), [config.markupDevice]);
  assert.equal(shown[0].hardware, config.markup.hardware, 'markup shown as its text');
  await assertInert(page, viewer.problems, 'fleet search');

  log('the status filter');
  await page.goto(`${base}/console/fleet?status=revoked`);
  assert.equal((await rows(page)).length, 0);
  assert.ok(await page.isVisible('#no-devices'));

  log('the device page shows device-controlled markup as text');
  await page.goto(`${base}/console/devices/${config.markupDevice}`);
  assert.equal((await page.textContent('#hardware')).trim(), config.markup.hardware);
  const attributes = await page.$$eval('#attributes tbody tr', (trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)),
  );
  assert.ok(
    attributes.some(([name, value]) => name === config.markup.attribute && value === config.markup.hardware),
    JSON.stringify(attributes),
  );
  const reports = await page.textContent('#reports');
  assert.ok(reports.includes(config.markup.message), reports);
  await assertInert(page, viewer.problems, 'device');
  await shot(page, 'device');

  log('the risk page shows the posture by region and by hardware');
  await page.goto(`${base}/console/risk`);
  assert.ok(await page.isVisible('#posture tr[data-key="eu"]'));
  await page.click('#groupings a:text("Hardware")');
  await page.waitForURL(/by=hardware/);
  assert.ok(await page.isVisible('#posture tr[data-key="board-b"]'));
  const keys = await page.$$eval('#posture tbody tr', (trs) => trs.map((tr) => tr.dataset.key));
  assert.ok(keys.includes(config.markup.hardware), JSON.stringify(keys));
  await assertInert(page, viewer.problems, 'risk');

  log('the risk page lists the advisory affecting the fleet, with no remediation for a viewer');
  await page.goto(`${base}/console/risk`);
  const advisoryRow = `#advisories tr[data-advisory="${config.advisory}"]`;
  assert.ok(await page.isVisible(advisoryRow), 'the advisory is listed');
  const advisoryCells = await page.$$eval(`${advisoryRow} td`, (tds) => tds.map((td) => td.textContent.trim()));
  assert.equal(advisoryCells[0], config.advisory, 'the advisory id shown as its text');
  assert.ok(Number(advisoryCells[2]) >= 1, `affected devices: ${advisoryCells}`);
  assert.ok(advisoryCells[5].includes('2.20.0'), `fixed in: ${advisoryCells}`);
  assert.equal(await page.$('form.remediate'), null, 'no remediation form for a viewer');
  assert.ok(await page.isVisible('#no-remediation'));
  await assertInert(page, viewer.problems, 'risk advisories');
  const remediatePath = `/console/risk/advisories/${encodeURIComponent(config.advisory)}/remediate`;
  const forgedRemediation = await page.request.post(`${base}${remediatePath}`, {
    form: { csrf: await page.inputValue('input[name=csrf]'), release: config.fixRelease },
    maxRedirects: 0,
  });
  assert.equal(forgedRemediation.status(), 403, await forgedRemediation.text());

  log('the releases page, and a release with its SBOM and where it runs');
  await page.goto(`${base}/console/releases`);
  const releaseRow = `tr[data-release="${config.release}"]`;
  assert.ok(await page.isVisible(releaseRow));
  await assertInert(page, viewer.problems, 'releases');
  await shot(page, 'releases');
  await Promise.all([page.waitForURL(/\/console\/release\?target=/), page.click(`${releaseRow} a`)]);
  const components = await page.$$eval('#components tbody tr', (trs) =>
    trs.map((tr) => tr.querySelector('td').textContent),
  );
  assert.ok(components.includes('requests'), JSON.stringify(components));
  assert.ok(components.includes(config.markup.hardware), 'an SBOM component named with markup, as text');
  assert.ok(Number(await page.textContent('[data-field=running]')) >= 1, 'devices run it');
  await assertInert(page, viewer.problems, 'release');
  await shot(page, 'release');
  await Promise.all([page.waitForURL(/version=1\.0\.0/), page.click('#fleet-link')]);
  assert.ok((await rows(page)).every((r) => r.version === '1.0.0'), 'the fleet filtered by its version');

  log('the incidents page and an incident, with no actions for a viewer');
  await page.goto(`${base}/console/incidents`);
  const incidentRow = `tr[data-incident="${config.incident}"]`;
  assert.ok(await page.isVisible(incidentRow));
  await assertInert(page, viewer.problems, 'incidents');
  await shot(page, 'incidents');
  await page.selectOption('select[name=state]', 'closed');
  await page.waitForURL(/state=closed/);
  assert.equal(await page.$(incidentRow), null, 'the state filter leaves the open incident out');
  await page.goto(`${base}/console/incidents/${config.incident}`);
  assert.equal(await page.$('#incident-actions'), null, 'no incident actions for a viewer');
  assert.ok((await page.textContent('h1')).includes(config.markup.hardware), 'the title as its text');
  await assertInert(page, viewer.problems, 'incident (viewer)');
  const forgedAck = await page.request.post(`${base}/console/incidents/${config.incident}/ack`, {
    form: { csrf: await page.inputValue('input[name=csrf]') },
    maxRedirects: 0,
  });
  assert.equal(forgedAck.status(), 403, await forgedAck.text());

  log('a viewer has no audit page');
  assert.equal(await page.$('header nav a[href="/console/audit"]'), null);
  const audit = await page.request.get(`${base}/console/audit`);
  assert.equal(audit.status(), 403);

  log('the indicators page charts stored events and lists the campaign');
  await page.click('header nav a:text("Indicators")');
  await page.waitForURL(`${base}/console/indicators`);
  for (const chart of ['#chart-results', '#chart-rates', '#chart-incidents']) {
    assert.ok(await page.isVisible(chart), `${chart} is drawn`);
  }
  // The failure the markup device reported is one of the window's results.
  const failed = await page.textContent('#update-summary tbody td:nth-child(2)');
  assert.ok(Number(failed) >= 1, `failed results: ${failed}`);
  assert.ok(await page.isVisible(`#campaign-times a[href="/console/campaigns/${config.campaign}"]`));
  await assertInert(page, viewer.problems, 'indicators');
  await shot(page, 'indicators');

  log('the campaigns page lists the campaign');
  await page.goto(`${base}/console/campaigns`);
  assert.ok(await page.isVisible(`tr[data-campaign="${config.campaign}"]`));
  await assertInert(page, viewer.problems, 'campaigns');
  await shot(page, 'campaigns');

  log('a viewer sees no campaign controls, and the server refuses a forged POST');
  await page.goto(`${base}/console/campaigns/${config.campaign}`);
  assert.equal(await page.$('#campaign-actions'), null, 'no action buttons for a viewer');
  assert.ok(await page.isVisible('#no-actions'));
  const csrf = await page.inputValue('input[name=csrf]');
  const forged = await page.request.post(`${base}/console/campaigns/${config.campaign}/pause`, {
    form: { csrf },
    maxRedirects: 0,
  });
  assert.equal(forged.status(), 403, await forged.text());
  assert.match(await forged.text(), /a viewer token may not do this/);
  await page.reload();
  assert.equal(await page.getAttribute('[data-status]', 'data-status'), 'running');
  await assertInert(page, viewer.problems, 'campaign (viewer)');

  // ---- an operator ------------------------------------------------------------------------
  const operator = await context();
  page = operator.page;
  log('the operator logs in and pauses the campaign');
  await login(page, config.operator);
  await page.goto(`${base}/console/campaigns/${config.campaign}`);
  assert.equal(await page.getAttribute('[data-status]', 'data-status'), 'running');
  await Promise.all([
    page.waitForURL(`${base}/console/campaigns/${config.campaign}`),
    page.click('#campaign-actions button[value=pause]'),
  ]);
  await page.waitForSelector('[data-status=paused]');
  // Waited for, not looked up once: the page's live script may reload it once more (a stream's
  // first reading can predate the pause), and a page being reloaded shows nothing.
  await page.waitForSelector('#halt', { timeout: 120000 });
  log("the viewer's open page shows the pause by itself (server-sent events)");
  await viewer.page.waitForSelector('[data-status=paused]', { timeout: 120000 });
  await shot(page, 'campaign-paused');
  log('the operator resumes it');
  await Promise.all([
    page.waitForURL(`${base}/console/campaigns/${config.campaign}`),
    page.click('#campaign-actions button[value=resume]'),
  ]);
  await page.waitForSelector('[data-status=running]');
  await assertInert(page, operator.problems, 'campaign (operator)');
  await shot(page, 'campaign');
  await viewer.page.waitForSelector('[data-status=running]', { timeout: 120000 });
  await assertInert(viewer.page, viewer.problems, 'campaign (viewer, live)');

  log('the operator acknowledges the incident');
  await page.goto(`${base}/console/incidents/${config.incident}`);
  assert.equal((await page.textContent('#acknowledged')).trim(), 'not yet');
  await Promise.all([
    page.waitForURL(`${base}/console/incidents/${config.incident}`),
    page.click('#incident-actions button[value=ack]'),
  ]);
  assert.notEqual((await page.textContent('#acknowledged')).trim(), 'not yet');
  assert.equal(await page.$('#incident-actions button[value=ack]'), null, 'acknowledged once');
  await assertInert(page, operator.problems, 'incident (operator)');
  await shot(page, 'incident');

  log('the operator creates the remediation campaign from the risk page');
  await page.goto(`${base}/console/risk`);
  await shot(page, 'risk');
  const form = `${advisoryRow} form.remediate`;
  await page.selectOption(`${form} select[name=release]`, config.fixRelease);
  await Promise.all([page.waitForURL(/\/console\/campaigns\/c-/), page.click(`${form} button`)]);
  assert.equal(await page.getAttribute('[data-status]', 'data-status'), 'draft');
  assert.ok((await page.textContent('#summary')).includes(config.fixRelease));
  await assertInert(page, operator.problems, 'remediation campaign');
  await shot(page, 'remediation');

  // ---- an auditor -------------------------------------------------------------------------
  const auditor = await context();
  page = auditor.page;
  log('the auditor verifies the audit chain and downloads the log');
  await login(page, config.auditor);
  await Promise.all([page.waitForURL(`${base}/console/audit`), page.click('header nav a[href="/console/audit"]')]);
  assert.ok(await page.isVisible('#audit-records'));
  await Promise.all([page.waitForURL(/verify=1/), page.click('#verify button')]);
  assert.ok(await page.isVisible('#chain-ok'), 'the chain is intact');
  assert.ok(Number(await page.textContent('[data-field=count]')) > 0);
  await assertInert(page, auditor.problems, 'audit');
  await shot(page, 'audit');
  const exported = await page.request.get(`${base}${await page.getAttribute('#export-jsonl', 'href')}`);
  assert.equal(exported.status(), 200);
  assert.match(exported.headers()['content-disposition'], /attachment/);
  const lines = (await exported.text()).trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.some((r) => r.action === 'risk.remediation_created'), 'the remediation is audited');
  assert.ok(lines.some((r) => r.action === 'incident.acknowledged' && r.subject === `incident:${config.incident}`));

  log('the viewer logs out');
  page = viewer.page;
  await Promise.all([page.waitForURL(`${base}/console/login`), page.click('header form button')]);
  await page.goto(`${base}/console/fleet`);
  assert.equal(page.url(), `${base}/console/login`, 'the session has ended');


  await browser.close();
  console.log('console browser test: every check passed');
} catch (error) {
  console.error(`console browser test failed at: ${step}`);
  console.error(error);
  await browser.close();
  process.exit(1);
}
