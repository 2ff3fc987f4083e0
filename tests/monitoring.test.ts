// Monitoring: the alert rules (promtool check and test), the HAProxy example (haproxy -c), and the
// Grafana dashboard against the real thing: Debian's Prometheus scrapes a real patroniglue under
// traffic (HTTP and agent checks, a role flip, a frozen Patroni), and every panel's query returns data.
import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { HEALTH_CHECK_PATHS } from "../src/check/routes.ts";
import { agentCheck } from "./support/agent_client.ts";
import { FakePatroni } from "./support/fake_patroni.ts";
import { configText, freePorts, GlueProcess, sleep, writeConfig } from "./support/glue.ts";
import { HAS_PROMTOOL, promtool } from "./support/prometheus.ts";
import { hasProgram, ROOT, runCommand, tempDir } from "./support/tools.ts";

const RULES = `${ROOT}/packaging/prometheus/patroniglue.rules.yml`;
const RULE_TESTS = `${ROOT}/packaging/prometheus/patroniglue.rules.test.yml`;
const DASHBOARD = `${ROOT}/packaging/grafana/patroniglue.json`;

interface Rule {
  alert: string;
  expr: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

const rules = (): Rule[] =>
  parseYaml(Deno.readTextFileSync(RULES)).groups.flatMap(
    (g: { rules: Rule[] }) => g.rules,
  );

Deno.test("alert rules: the ones the issue asks for, each with a severity, a summary and a description", () => {
  const alerts = rules();
  assert.deepEqual(alerts.map((r) => r.alert).sort(), [
    "PatroniRoleFlapping",
    "PatroniSlowThroughPatroniglue",
    "PatroniUnreachableThroughPatroniglue",
    "PatroniglueAnsweringErrors",
    "PatroniglueDown",
    "PatroniglueNoChecks",
    "PatroniglueRestarting",
  ]);
  for (const rule of alerts) {
    assert.ok(["critical", "warning"].includes(rule.labels.severity), rule.alert);
    assert.ok(rule.annotations.summary.includes("{{ $labels.instance }}"), rule.alert);
    assert.ok(rule.annotations.description.length > 150, `${rule.alert}: a description to act on`);
    assert.match(rule.expr, /job="patroniglue"/, `${rule.alert}: the README's scrape job`);
  }
  // Patroni slow is measured against each node's own backend.timeout.
  const slow = alerts.find((r) => r.alert === "PatroniSlowThroughPatroniglue")!;
  assert.match(slow.expr, /patroniglue_backend_timeout_seconds/);
});

Deno.test("alert rule tests: every alert is shown to fire and shown not to fire", () => {
  type AlertTest = {
    eval_time: string;
    alertname: string;
    exp_alerts: { exp_labels: Record<string, string> }[];
  };
  const tests: { alert_rule_test: AlertTest[]; input_series: { series: string }[] }[] =
    parseYaml(Deno.readTextFileSync(RULE_TESTS)).tests;
  for (const { alert } of rules()) {
    const cases = tests.flatMap((t) =>
      t.alert_rule_test.filter((c) => c.alertname === alert).map((c) => ({ c, t }))
    );
    assert.ok(cases.some(({ c }) => c.exp_alerts.length > 0), `${alert} fires in a test`);
    // Not firing: an evaluation without it, or an instance of the input that never fires.
    const quiet = cases.some(({ c, t }) => {
      if (c.exp_alerts.length === 0) return true;
      const firing = new Set(c.exp_alerts.map((a) => a.exp_labels.instance));
      return t.input_series.some((s) => !firing.has(s.series.match(/instance="([^"]+)"/)?.[1]!));
    });
    assert.ok(quiet, `${alert} is shown not to fire`);
  }
});

Deno.test({
  name: "alert rules: promtool check rules and promtool test rules pass",
  ignore: !HAS_PROMTOOL,
  async fn() {
    const check = await promtool(["check", "rules", RULES]);
    assert.equal(check.code, 0, check.output);
    assert.match(check.output, /SUCCESS: 7 rules found/);
    const test = await promtool(["test", "rules", RULE_TESTS]);
    assert.equal(test.code, 0, test.output);
    assert.match(test.output, /SUCCESS/);
  },
});

Deno.test({
  name:
    "HAProxy example: haproxy -c accepts it; it checks the example config's ports and real check paths",
  ignore: !hasProgram("haproxy", ["-v"]),
  async fn() {
    const file = `${ROOT}/packaging/haproxy.cfg.example`;
    const out = await runCommand("haproxy", ["-c", "-f", file]);
    assert.equal(out.code, 0, out.stdout + out.stderr);
    const text = await Deno.readTextFile(file);
    const example = await Deno.readTextFile(`${ROOT}/config.yml.example`);
    const frontendPort = parseYaml(example).frontend.port;
    const agentPort = Number(
      example.slice(example.indexOf("\nagent:")).match(/# port: (\d+)/)?.[1],
    );
    const servers = text.split("\n").filter((l) => /^\s+server /.test(l));
    assert.equal(servers.length, 12);
    for (const line of servers) {
      const agent = line.match(/agent-port (\d+) .*agent-send "([^"\\]+)\\n"/);
      if (agent) {
        assert.equal(Number(agent[1]), agentPort, line);
        assert.ok(HEALTH_CHECK_PATHS.has(new URL(agent[2], "http://x").pathname), line);
      } else assert.match(line, new RegExp(`check port ${frontendPort}$`), line);
    }
    for (const path of text.matchAll(/(?:OPTIONS|uri) (\/[^ ?\n]*)/g)) {
      assert.ok(HEALTH_CHECK_PATHS.has(path[1]), path[0]);
    }
  },
});

/** A panel of the dashboard (rows hold theirs in `panels`). */
interface Panel {
  title: string;
  type: string;
  datasource?: { type: string; uid: string };
  targets?: { refId: string; expr: string; datasource?: { uid: string } }[];
  panels?: Panel[];
}

const dashboard = () => JSON.parse(Deno.readTextFileSync(DASHBOARD));
const allPanels = (panels: Panel[]): Panel[] =>
  panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);

Deno.test("dashboard: importable (a stable uid, datasource, job and instance variables), the panels the issue asks for", () => {
  const d = dashboard();
  assert.equal(d.uid, "patroniglue");
  assert.equal(d.id, undefined, "no database id: importable anywhere");
  const vars = d.templating.list as {
    name: string;
    type: string;
    query: unknown;
    includeAll?: boolean;
  }[];
  assert.deepEqual(vars.map((v) => [v.name, v.type]), [
    ["datasource", "datasource"],
    ["job", "query"],
    ["instance", "query"],
  ]);
  assert.equal(vars[0].query, "prometheus");
  assert.ok(vars[2].includeAll);
  const panels = allPanels(d.panels);
  for (const panel of panels.filter((p) => p.targets)) {
    assert.deepEqual(panel.datasource, { type: "prometheus", uid: "${datasource}" }, panel.title);
    const refIds = panel.targets!.map((t) => t.refId);
    assert.equal(new Set(refIds).size, refIds.length, `${panel.title}: refIds`);
    for (const t of panel.targets!) {
      assert.match(t.expr, /instance=~"\$instance"/, `${panel.title}: filtered by instance`);
      assert.match(t.expr, /job=~"\$job"/, `${panel.title}: filtered by job`);
    }
  }
  const titles = panels.map((p) => p.title);
  for (
    const title of [
      "Checks per second by route, status and cache result",
      "Patroni latency",
      "Requests to Patroni by outcome",
      "Role over time",
      "Answers by source",
      "Agent replies",
      "Memory",
      "CPU",
      "Open connections",
    ]
  ) assert.ok(titles.includes(title), title);
  const exprs = panels.flatMap((p) => p.targets ?? []).map((t) => t.expr).join("\n");
  for (
    const metric of [
      "patroniglue_requests_total",
      "patroniglue_backend_request_duration_seconds_bucket",
      "patroniglue_backend_requests_total",
      "patroniglue_member_info",
      "patroniglue_member_role_changes_total",
      "patroniglue_agent_checks_total",
      "process_resident_memory_bytes",
      "process_cpu_seconds_total",
      "patroniglue_open_connections",
    ]
  ) assert.ok(exprs.includes(metric), metric);
  // Answers by source: the cache label (hit, miss, coalesced, error, local, and what comes later).
  const sources = panels.find((p) => p.title === "Answers by source")!.targets![0].expr;
  assert.match(sources, /sum by \(cache\) \(rate\(patroniglue_requests_total\{/);
});

/** A panel target's query as Grafana sends it, for a 1 s scrape interval and one instance. */
function asGrafanaSends(expr: string, instance: string): string {
  return expr
    .replaceAll("$__rate_interval", "4s")
    .replaceAll("$__interval", "1s")
    .replaceAll("$__range", "1m")
    .replaceAll("$instance", instance.replaceAll(".", "\\\\."))
    .replaceAll("$job", "patroniglue");
}

Deno.test({
  name:
    "dashboard: Debian's Prometheus scrapes a real patroniglue under traffic; every panel's query returns data",
  ignore: !hasProgram("prometheus") || !HAS_PROMTOOL,
  async fn() {
    await using dir = await tempDir("pg-prometheus-");
    await using fake = await FakePatroni.start({ delayMs: 5 });
    const [port, agentPort, promPort] = freePorts(3);
    const file = await writeConfig(
      configText(port, fake.port, {
        backend: "  timeout: 0.3",
        cache: "  ttl: 0.2",
        top: `agent:\n  host: 127.0.0.1\n  port: ${agentPort}`,
      }),
    );
    await using glue = await GlueProcess.start(["-config", file]);
    const instance = `127.0.0.1:${port}`;
    await Deno.writeTextFile(
      `${dir.path}/prometheus.yml`,
      `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n` +
        `rule_files: [${JSON.stringify(RULES)}]\n` +
        `scrape_configs:\n  - job_name: patroniglue\n    static_configs:\n` +
        `      - targets: [${JSON.stringify(instance)}]\n`,
    );
    const prometheus = new Deno.Command("prometheus", {
      args: [
        `--config.file=${dir.path}/prometheus.yml`,
        `--storage.tsdb.path=${dir.path}/data`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        "--log.level=warn",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const promLog = new Response(prometheus.stderr).text();
    const api = `http://127.0.0.1:${promPort}`;
    try {
      const deadline = Date.now() + 30_000;
      while (!(await fetch(`${api}/-/ready`).then((r) => (r.body?.cancel(), r.ok), () => false))) {
        assert.ok(Date.now() < deadline, "Prometheus ready within 30 s");
        await sleep(100);
      }
      const query = async (path: string, params: Record<string, string>) => {
        const res = await fetch(`${api}${path}?${new URLSearchParams(params)}`);
        const body = await res.json();
        assert.equal(
          body.status,
          "success",
          `${path} ${JSON.stringify(params)}: ${JSON.stringify(body)}`,
        );
        return body.data;
      };

      // Prometheus applies its targets up to 5 s after it starts: wait for two scrapes first.
      const scraped = `count_over_time(up{job="patroniglue",instance="${instance}"}[1m])`;
      while (
        !(Number((await query("/api/v1/query", { query: scraped })).result[0]?.value[1]) >= 2)
      ) {
        assert.ok(Date.now() < deadline, "two scrapes within 30 s");
        await sleep(200);
      }

      // Traffic as HAProxy makes it: HTTP checks of both roles, agent checks, a probe and a path
      // that is not a check. The member turns replica, Patroni freezes for longer than
      // backend.timeout, and the member is primary again: a failover and a failback.
      const started = Date.now() / 1000;
      let running = true;
      const http = (async () => {
        while (running) {
          for (const path of ["/primary", "/replica?lag=1MB", "/health", "/nope"]) {
            await fetch(`${glue.url}${path}`).then((r) => r.body?.cancel());
          }
          await sleep(20);
        }
      })();
      const agent = (async () => {
        while (running) {
          await agentCheck(agentPort, "/primary\n");
          await agentCheck(agentPort, "/replica\n");
          await sleep(50);
        }
      })();
      try {
        await sleep(3000);
        fake.role = "replica";
        await sleep(3000);
        fake.freeze();
        await sleep(1500);
        fake.thaw();
        await sleep(1500);
        fake.role = "primary";
        await sleep(3000);
      } finally {
        running = false;
        await Promise.all([http, agent]);
      }
      // At least 8 scrapes, and the last one after the traffic.
      await sleep(1500);
      const scrapes = await query("/api/v1/query", { query: scraped });
      assert.ok(Number(scrapes.result[0]?.value[1]) >= 10, JSON.stringify(scrapes));

      // Every panel target, as Grafana would send it, over the traffic's time range, returns data;
      // every panel shows something other than 0. (A target may show only zeros: a labelled
      // counter appears at its first increment, at which rate() sees nothing, and a failover's
      // invalidations or a freeze's timeouts may each land in a series of their own.)
      const end = Date.now() / 1000;
      const panels = allPanels(dashboard().panels).filter((p) => p.targets);
      let queried = 0;
      for (const panel of panels) {
        const shown: number[] = [];
        for (const target of panel.targets!) {
          const expr = asGrafanaSends(target.expr, instance);
          const data = await query("/api/v1/query_range", {
            query: expr,
            start: String(started),
            end: String(end),
            step: "1",
          });
          const values = (data.result as { values: [number, string][] }[])
            .flatMap((s) => s.values.map((v) => Number(v[1])))
            .filter((v) => !Number.isNaN(v));
          assert.ok(values.length > 0, `no data: ${panel.title} (${target.refId}): ${expr}`);
          shown.push(...values);
          queried++;
        }
        assert.ok(shown.some((v) => v !== 0), `only zeros: ${panel.title}`);
      }
      assert.equal(queried, 22);

      // The role over time: primary, replica, primary.
      const role = panels.find((p) => p.title === "Role over time")!.targets![0].expr;
      const timeline = await query("/api/v1/query_range", {
        query: asGrafanaSends(role, instance),
        start: String(started),
        end: String(end),
        step: "1",
      });
      const roles = (timeline.result[0].values as [number, string][]).map((v) => v[1]);
      assert.deepEqual(roles.filter((r, i) => r !== roles[i - 1]), ["3", "1", "3"], roles.join());

      // The alert rules load and evaluate without error on the real metrics.
      const loaded = await query("/api/v1/rules", {});
      const evaluated = loaded.groups.flatMap((g: { rules: { name: string; health: string }[] }) =>
        g.rules
      );
      assert.equal(evaluated.length, 7);
      for (const r of evaluated) assert.equal(r.health, "ok", `${r.name}: ${JSON.stringify(r)}`);
    } finally {
      prometheus.kill("SIGTERM");
      await prometheus.status;
      const log = await promLog;
      assert.doesNotMatch(log, /level=error/, log);
    }
  },
});
