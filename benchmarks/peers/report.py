"""benchmarks/peers' report: the machine, peers.md, the two plots and peers.json."""

from __future__ import annotations

import json
import os
import platform
import subprocess

import grpc

RATIOS = (  # (subject, baseline): the sidecar's and OPA's figures against the bare servers'
    ("sidecar unary", "bare aio unary"), ("sidecar unary", "bare uvloop unary"),
    ("sidecar unary", "bare sync unary"),
    ("sidecar stream", "bare aio stream"), ("sidecar stream", "bare uvloop stream"),
    ("sidecar stream", "bare sync stream"),
    ("OPA REST", "bare aio unary"), ("OPA REST", "bare sync unary"),
)


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 \
        else f"unavailable ({done.stderr.strip()[:80]})"


def _commit(repo: str) -> str:
    """The checked-out commit, read from .git (no git command)."""
    try:
        with open(os.path.join(repo, ".git", "HEAD")) as f:
            head = f.read().strip()
        if head.startswith("ref: "):
            with open(os.path.join(repo, ".git", head[5:])) as f:
                return f.read().strip()[:12] + f" ({head[5:].removeprefix('refs/heads/')})"
        return head[:12]
    except OSError:
        return "unknown"


def machine(opa: str, envoy_note: str) -> dict:
    cpu, mhz = "unknown", ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("cpu MHz") and not mhz:
                mhz = f", {float(line.split(':', 1)[1]):.0f} MHz"
    cpu += mhz
    with open("/proc/meminfo") as f:
        mem_kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    opa_version = "unavailable"
    if os.access(opa, os.X_OK):
        out = subprocess.run([opa, "version"], capture_output=True, text=True).stdout
        fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
        opa_version = f"{fields.get('Version', '?')} (built with {fields.get('Go Version', '?')})"
    try:
        with open(envoy_note) as f:
            envoy = f.read().strip()
    except OSError:
        envoy = "not asked (run benchmarks/peers/install_opa.sh)"
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {"nproc": _first_line(["nproc"]), "cpu": cpu, "memory_gib": mem_kib / 2**20,
            "kernel": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "grpcio": grpc.__version__,
            "go": _first_line(["go", "version"]), "opa": opa_version, "opa_envoy": envoy,
            "load_start": load(), "commit": _commit(repo)}


def memory(pid: int) -> dict:
    """VmRSS and VmHWM of a process, in MiB."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def _envoy(note: str) -> str:
    """install_opa.sh's note on the module proxy's answer, as a sentence."""
    if note.startswith("refused: "):
        said = note.rsplit("server response:", 1)[-1].strip()
        return ("**not a subject**: the Go module proxy refuses"
                " `github.com/open-policy-agent/opa-envoy-plugin` (`go list -m -versions`"
                f" answers \"{said}\"), so it cannot be built from the registries here.")
    return f"the module proxy lists it ({note}); it is not built by this harness."


def opa_bench(opa: str, policy: str, data: str, order: dict) -> str:
    """`opa bench` of data.ess.decision for one order: OPA's evaluation alone."""
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(order, f)
        f.flush()
        try:
            done = subprocess.run([opa, "bench", "--format", "json", "--count", "1", "-d",
                                   policy, "-d", data, "-i", f.name, "data.ess.decision"],
                                  capture_output=True, text=True, timeout=120)
            figures = json.loads(done.stdout)
            n = figures["N"]  # Go's testing.BenchmarkResult: T in ns over N evaluations
            return (f"{figures['T'] / n / 1000:.0f} µs and {figures['MemAllocs'] // n}"
                    " allocations per evaluation")
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError,
                subprocess.TimeoutExpired) as error:
            return f"unavailable ({error!r})"


def _row(rows: list[dict], client: str, n: int, subject: str) -> dict:
    return next(r for r in rows if (r["client"], r["concurrency"], r["subject"])
                == (client, n, subject))


def _results_table(rows: list[dict], client: str, subjects, concurrency) -> list[str]:
    out = ["| subject | N | p50 µs | p99 µs | p99.9 µs | calls/s | server CPU µs/call"
           " | client CPU µs/call | calls |", "|---|---|---|---|---|---|---|---|---|"]
    for s in subjects:
        for n in concurrency:
            r = _row(rows, client, n, s.name)
            out.append(f"| {s.name} | {n} | {r['p50']:.0f} | {r['p99']:.0f} | {r['p99.9']:.0f}"
                       f" | {r['calls_per_s']:.0f} | {r['server_cpu_us_per_call']:.0f}"
                       f" | {r['client_cpu_us_per_call']:.0f} | {r['calls']} |")
    return out


def _ratio_table(rows: list[dict], client: str, concurrency) -> list[str]:
    out = ["| subject / baseline | " + " | ".join(f"N={n}" for n in concurrency) + " |",
           "|---|" + "---|" * len(concurrency)]
    for subject, base in RATIOS:
        cells = []
        for n in concurrency:
            s, b = _row(rows, client, n, subject), _row(rows, client, n, base)
            cells.append(f"{s['p50'] / b['p50']:.2f} / {s['calls_per_s'] / b['calls_per_s']:.2f}"
                         f" / {s['server_cpu_us_per_call'] / b['server_cpu_us_per_call']:.2f}")
        out.append(f"| {subject} / {base} | " + " | ".join(cells) + " |")
    return out


def probe_table(probe_rows: list[dict]) -> list[str]:
    out = ["| # | probe | order | expected | sidecar unary | sidecar stream | OPA"
           " | bare aio | bare sync |", "|---|---|---|---|---|---|---|---|---|"]
    for i, row in enumerate(probe_rows, 1):
        p = row["probe"]
        order = (f"{p.account}/{p.strategy} {p.side} {p.quantity:g} {p.symbol}"
                 f" @ {p.price:.10g}"
                 + (" (GLOBAL tripped)" if p.phase == "global" else ""))
        out.append(f"| {i} | {p.name} | {order} | {p.expected} | {row['sidecar unary']}"
                   f" | {row['sidecar stream']} | {row['opa']} | {row['bare aio']}"
                   f" | {row['bare sync']} |")
    return out


def plots(out_dir: str, rows: list[dict], latencies: dict, subjects, clients_,
          concurrency) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {s.name: ("-" if s.api != "stream" else "--") for s in subjects}
    # One colour per server; dashed: the stream API.
    by_server = {"bare-aio": "tab:blue", "bare-uvloop": "tab:cyan", "bare-sync": "tab:green",
                 "sidecar": "tab:red", "opa": "black"}
    colours = {s.name: by_server.get(s.server, "tab:gray") for s in subjects}
    fig, axes = plt.subplots(len(clients_), len(concurrency), sharex=True, sharey=True,
                             figsize=(4.2 * len(concurrency), 3.6 * len(clients_)),
                             squeeze=False)
    for i, client in enumerate(clients_):
        for j, n in enumerate(concurrency):
            ax = axes[i][j]
            for s in subjects:
                values = sorted(latencies[(client, n, s.name)])
                step = max(1, len(values) // 2000)
                xs = [v / 1000 for v in values[::step]] + [values[-1] / 1000]
                ys = [k / len(values) for k in range(0, len(values), step)] + [1.0]
                ax.plot(xs, ys, styles[s.name], color=colours[s.name], label=s.name, lw=1.3)
            ax.set_xscale("log")
            ax.set_title(f"{client} client, N={n}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            if i == len(clients_) - 1:
                ax.set_xlabel("latency µs (log)")
            if j == 0:
                ax.set_ylabel("fraction of calls ≤")
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle("Decision latency CDF (CheckOrder; OPA: POST /v1/data/ess/decision),"
                 " each subject over its Unix socket")
    fig.tight_layout()
    cdf = os.path.join(out_dir, "peers-cdf.png")
    fig.savefig(cdf, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(clients_), figsize=(6.5 * len(clients_), 4.6),
                             squeeze=False)
    for i, client in enumerate(clients_):
        ax = axes[0][i]
        for s in subjects:
            ys = [_row(rows, client, n, s.name)["calls_per_s"] for n in concurrency]
            ax.plot(concurrency, ys, styles[s.name], marker="o", color=colours[s.name],
                    label=s.name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(concurrency, [str(n) for n in concurrency])
        ax.set_xlabel("calls in flight (N)")
        ax.set_ylabel("calls/s")
        ax.set_title(f"{client} client")
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Throughput against concurrency, each subject over its Unix socket")
    fig.tight_layout()
    throughput = os.path.join(out_dir, "peers-throughput.png")
    fig.savefig(throughput, dpi=110)
    plt.close(fig)
    return [cdf, throughput]


def write(out_dir: str, args, argv_text: str, machine: dict, result: dict,
          subjects) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    rows, conc, kinds = result["rows"], args.concurrency, args.clients
    paths = plots(out_dir, rows, result["latencies"], subjects, kinds, conc)
    m = machine
    command = "python benchmarks/peers/run.py" + (f" {argv_text}" if argv_text else "")
    lines = [
        "# The sidecar side by side: bare grpcio and OPA",
        "",
        f"Written by `{command}` (`make bench-peers`), {m['started']}, in"
        f" {m['duration_s'] / 60:.1f} minutes. Method and caveats:"
        " [benchmarks/README.md](../README.md#side-by-side-bare-grpcio-and-opa-benchmarkspeers),"
        " and the docstrings of `benchmarks/peers/*.py`.",
        "",
        "## Machine",
        "",
        "| | |", "|---|---|",
        f"| CPUs (`nproc`) | {m['nproc']} |",
        f"| CPU | {m['cpu']} |",
        f"| memory | {m['memory_gib']:.1f} GiB |",
        f"| kernel | {m['kernel']} |",
        f"| Python, grpcio | {m['python']}, grpcio {m['grpcio']} |",
        f"| Go | {m['go']} |",
        f"| Go client | {m['go_client']} (clients/go/cmd/peersbench) |",
        f"| OPA | {m['opa']} |",
        f"| commit | {m['commit']} (the work tree may hold uncommitted changes) |",
        f"| load average (1 / 5 / 15 min) | {m['load_start']} at the start,"
        f" {m['load_end']} at the end |",
        "",
        "A shared 2-core VM: other work on it (the load average says how much) slows every"
        " subject; the interleaved rounds spread it over all of them, not away.",
        "",
        "## Subjects and method",
        "",
        "Every subject is served over its **Unix socket** (all of them can listen on one).",
        "",
        "| subject | server | API |", "|---|---|---|",
        "| bare aio unary / stream | `benchmarks/bare_server.py`, grpc.aio, no logic |"
        " CheckOrder / CheckOrderStream |",
        "| bare uvloop unary / stream | `benchmarks/bare_server.py --event-loop uvloop`:"
        " the same on uvloop, the sidecar's event loop | CheckOrder / CheckOrderStream |",
        "| bare sync unary / stream | `benchmarks/peers/bare_sync_server.py`, grpc.server on"
        " a ThreadPoolExecutor (160 threads), no logic | CheckOrder / CheckOrderStream |",
        "| sidecar unary / stream | `python -m ess_sidecar serve`, fresh state, on uvloop"
        " (`server.event_loop`, shipped) | CheckOrder / CheckOrderStream |",
        "| OPA REST | `opa run --server`, `benchmarks/peers/policy/ess.rego` + `data.json` |"
        " POST /v1/data/ess/decision, HTTP/1.1 keep-alive, JSON |",
        "",
        f"- OPA-Envoy (ext_authz gRPC): {_envoy(m['opa_envoy'])}",
        f"- OPA's own evaluation of the policy for the timed order, `opa bench` in process"
        f" (no HTTP, no JSON), after the timing: {result['opa_bench']}.",
        f"- Clients: {', '.join(kinds)}; N calls in flight, N in {', '.join(map(str, conc))}."
        " Go (`peersbench`): N goroutines; gRPC on one shared connection (unary: N"
        " concurrent calls; stream: N streams, one request in flight each); HTTP: N"
        " keep-alive connections. Python: N coroutines on one asyncio loop in the harness"
        " (grpc.aio, one channel; OPA through asyncio streams, N connections); one thread,"
        " so its figures are capped by its own CPU per call.",
        f"- Per client and N: warm-up {args.warmup_s:g} s per subject, then {args.rounds}"
        f" rounds of one {args.segment_s:g}-second segment per subject, the order rotated"
        " every round and reversed every other round. The sidecar's working orders are ended"
        " after each of its segments, off the clock (benchmarks/workload.py).",
        "- Latency: the client's clock around each call (the order is made before it);"
        " percentiles nearest-rank. calls/s: calls over the segments' wall time. Server CPU:"
        " utime + stime of the subject's process and its children (/proc/<pid>/stat; the"
        " sidecar's journal syncer is its child) over its segments, per"
        " call; client CPU likewise for the client process (for Python, the harness).",
        "- Every timed answer is checked ALLOWED; the timed orders are"
        " `benchmarks/workload.py`'s (unique client_order_id, price cycling within 1 % of the"
        " mark), for OPA in its JSON input.",
        "",
        "## Probes: the same decisions before any timing",
        "",
        "Each probe went to the sidecar (unary and stream, two orders), OPA and both bare"
        " servers. The bare servers have no rules and answer every order with a fixed"
        " ALLOWED: for them the check is only that they answer (\"answers\"). Any difference"
        " from the expected reason stops the run before timing.",
        "",
        *probe_table(result["probes"]),
        "",
        "## Results",
        "",
    ]
    for kind in kinds:
        lines += [f"### {kind.capitalize()} client", "", *_results_table(rows, kind, subjects,
                                                                          conc), ""]
    lines += ["## Ratios against the bare servers", "",
              "Each cell: p50 latency ratio / calls/s ratio / server CPU per call ratio"
              " (subject ÷ baseline, same client and N). Above 1 is slower, below 1 is"
              " less throughput; CPU ratios say how much more work per call the subject's"
              " process does.", ""]
    for kind in kinds:
        lines += [f"### {kind.capitalize()} client", "", *_ratio_table(rows, kind, conc), ""]
    mem = result["memory"]
    lines += [
        "## Servers' memory at the end", "",
        "| server | RSS MiB | peak RSS MiB |", "|---|---|---|",
        *(f"| {name} | {v.get('VmRSS', 0):.0f} | {v.get('VmHWM', 0):.0f} |"
          for name, v in mem.items()),
        "",
        "## Plots", "",
        "![latency CDF](peers-cdf.png)", "",
        "![throughput against concurrency](peers-throughput.png)", "",
    ]
    md = os.path.join(out_dir, "peers.md")
    with open(md, "w") as f:
        f.write("\n".join(lines))
    raw = os.path.join(out_dir, "peers.json")
    with open(raw, "w") as f:
        json.dump({"args": vars(args), "machine": machine, "rows": rows, "memory": mem,
                   "probes": [{**{k: v for k, v in r.items() if k != "probe"},
                               "probe": vars(r["probe"])} for r in result["probes"]]},
                  f, indent=1)
    return [md, *paths, raw]
