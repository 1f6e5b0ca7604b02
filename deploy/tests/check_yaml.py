#!/usr/bin/env python3
"""check_yaml.py - structural checks of deploy/docker-compose.yml and
deploy/k8s/*.yaml against the Dockerfile, the balancer configs and the
server's flags.  Run from the repository root by
tests/integration/test_deploy_configs.sh; prints one "PASS what" or
"FAIL what: why" line per check.  Reads files only; needs python3-yaml.
Never part of the runtime or of the images.
"""
import re, glob, yaml

def report(ok, what, why=""):
    print(("PASS " if ok else "FAIL ") + what + ("" if ok else ": " + why))

def flag(args, name, default):
    """Value of --name in an argv list, else default (the image's CMD)."""
    return float(args[args.index(name) + 1]) if name in args else default

def dur(s):
    m = re.fullmatch(r"(\d+)s", str(s))
    return int(m.group(1)) if m else None

# Defaults the image gives (Dockerfile CMD) and the server's own flags.
dockerfile = open("Dockerfile").read()
cmd = re.findall(r'^CMD (\[.*\])$', dockerfile, re.M)
image_drain = flag(yaml.safe_load(cmd[-1]), "--drain-timeout", 30.0) if cmd else 30.0
entry = re.findall(r'^ENTRYPOINT (\[.*\])$', dockerfile, re.M)
image_port = int(flag(yaml.safe_load(entry[-1]), "--port", 8080)) if entry else 8080

# compose
errs = []
try:
    c = yaml.safe_load(open("deploy/docker-compose.yml"))
    sv = c["services"]
    reps = sorted(k for k in sv if re.fullmatch(r"ssmd\d+", k))
    if len(reps) < 2: errs.append("fewer than 2 ssmd replicas")
    for r in reps:
        s = sv[r]
        if s["build"].get("target") != "cpu": errs.append(f"{r}: build target is not cpu")
        drain = flag(s.get("command", []), "--drain-timeout", image_drain)
        g = dur(s.get("stop_grace_period"))
        if g is None or not (drain < g <= drain + 30):
            errs.append(f"{r}: stop_grace_period {s.get('stop_grace_period')} vs --drain-timeout {drain}")
        t = " ".join(s["healthcheck"]["test"])
        if "/dev/tcp/127.0.0.1/8080" not in t or not re.search(r"/(ready|health) ", t):
            errs.append(f"{r}: healthcheck does not probe /ready or /health on 8080")
    ng = open("deploy/nginx/nginx.conf").read()
    up = re.findall(r"^\s*server (ssmd\d+):8080", ng, re.M)
    if sorted(up) != reps: errs.append(f"nginx upstream {up} != replicas {reps}")
    if not re.search(r"^\s*hash \$\w+ consistent;", ng, re.M) or "$http_x_session_id" not in ng:
        errs.append("nginx: no consistent hash on the session id")
    hp = open("deploy/haproxy/haproxy.cfg").read()
    hs = re.findall(r"^\s*server (ssmd\d+) (ssmd\d+):8080", hp, re.M)
    if sorted(a for a, b in hs) != reps or any(a != b for a, b in hs):
        errs.append(f"haproxy servers {hs} != replicas {reps}")
    for needle in ("balance hdr(X-Session-Id)", "hash-type consistent"):
        if needle not in hp: errs.append(f"haproxy: no '{needle}'")
    for lb, conf in (("nginx", "./nginx/nginx.conf"), ("haproxy", "./haproxy/haproxy.cfg")):
        if not any(v.startswith(conf + ":") for v in sv[lb].get("volumes", [])):
            errs.append(f"{lb} does not mount {conf}")
except Exception as e:
    errs.append(repr(e))
report(not errs, "docker-compose.yml: replicas match both balancers' server lines; stop_grace_period covers --drain-timeout; healthchecks", "; ".join(errs))

# Kubernetes
docs = []
for f in sorted(glob.glob("deploy/k8s/*.yaml")):
    for d in yaml.safe_load_all(open(f)):
        if d: docs.append((f, d))
kinds = {}
for f, d in docs:
    kinds.setdefault(d["kind"], []).append(d)
errs = []
def is_ssmd(d):
    return d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name") == "ssmd"
deps = [d for d in kinds.get("Deployment", []) if is_ssmd(d)]
if not any("cuda" in d["metadata"]["name"] for d in deps): errs.append("no CUDA Deployment")
for d in deps:
    name = d["metadata"]["name"]
    spec = d["spec"]["template"]["spec"]
    labels = d["spec"]["template"]["metadata"]["labels"]
    if d["spec"]["selector"]["matchLabels"].items() - labels.items():
        errs.append(f"{name}: selector does not match the pod labels")
    (ctr,) = spec["containers"]
    args = ctr.get("args", [])
    port = int(flag(args, "--port", image_port))
    ports = {p.get("name"): p["containerPort"] for p in ctr["ports"]}
    if port not in ports.values(): errs.append(f"{name}: containerPort is not the server's --port {port}")
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        g = ctr.get(probe, {}).get("httpGet", {})
        p = g.get("port")
        if g.get("path") != path or ports.get(p, p) != port:
            errs.append(f"{name}: {probe} is {g}, want {path} on {port}")
    pre = ctr.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if len(pre) != 2 or not pre[0].endswith("/sleep"):
        errs.append(f"{name}: preStop is not a sleep: {pre}"); continue
    drain = flag(args, "--drain-timeout", image_drain)
    need = float(pre[1]) + drain
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if not (need < grace <= need + 30):
        errs.append(f"{name}: terminationGracePeriodSeconds {grace} vs preStop {pre[1]} + --drain-timeout {drain}")
    threads = flag(args, "--threads", 0)
    res = ctr.get("resources", {})
    if "cpu" not in res.get("requests", {}): errs.append(f"{name}: no cpu request (the HPA needs it)")
    gpu = res.get("limits", {}).get("nvidia.com/gpu")
    cuda = "cuda" in name
    if cuda != (gpu is not None and int(gpu) >= 1):
        errs.append(f"{name}: nvidia.com/gpu limit {gpu} for a {'CUDA' if cuda else 'CPU'} pod")
    if cuda != ctr["image"].endswith(":cuda"): errs.append(f"{name}: image {ctr['image']}")
    if spec.get("securityContext", {}).get("runAsNonRoot") is not True: errs.append(f"{name}: not runAsNonRoot")
report(not errs, "k8s Deployments: readiness /ready, liveness /health on the server's port; preStop + --drain-timeout < grace period; GPU limit on the CUDA pods only", "; ".join(errs))

errs = []
pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deps]
def selects(sel):
    return all(not (sel.items() - l.items()) for l in pod_labels)
ssmd_services = [s for s in kinds.get("Service", []) if s["spec"]["selector"].get("app.kubernetes.io/name") == "ssmd"]
for s in ssmd_services:
    if not selects(s["spec"]["selector"]): errs.append(f"Service {s['metadata']['name']} misses some pods")
    for p in s["spec"]["ports"]:
        if p["targetPort"] not in ("http", 8080): errs.append(f"Service {s['metadata']['name']} targets {p['targetPort']}")
for p in kinds.get("PodDisruptionBudget", []):
    if not selects(p["spec"]["selector"]["matchLabels"]): errs.append("PDB misses some pods")
    if p["spec"].get("maxUnavailable") != 1 and "minAvailable" not in p["spec"]: errs.append("PDB allows no bound")
names = {d["metadata"]["name"] for d in deps}
for h in kinds.get("HorizontalPodAutoscaler", []):
    t = h["spec"]["scaleTargetRef"]
    if t["kind"] != "Deployment" or t["name"] not in names: errs.append(f"HPA targets {t}")
    if h["spec"]["minReplicas"] < 2: errs.append("HPA may scale to one replica")
for k in ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
    if k not in kinds: errs.append(f"no {k}")
ing = kinds.get("Ingress", [])
if ing and ing[0]["metadata"]["annotations"].get("nginx.ingress.kubernetes.io/upstream-hash-by") != "$http_x_session_id":
    errs.append("Ingress does not hash on $http_x_session_id")
report(not errs, "k8s Services, PodDisruptionBudget, HorizontalPodAutoscaler, Ingress select the ssmd pods and ports", "; ".join(errs))

# The session store: every replica/pod names a Redis that exists.
def store_of(args):
    """(host, port) of --session-store redis://host:port, else None."""
    if "--session-store" not in args: return None
    m = re.fullmatch(r"redis://([a-z0-9.-]+):(\d+)(/\d+)?", args[args.index("--session-store") + 1])
    return (m.group(1), int(m.group(2))) if m else ("?", 0)

def redis_args_ok(argv, where):
    a = " ".join(argv)
    if "redis-server" not in a: errs.append(f"{where}: does not run redis-server")
    if "--maxmemory-policy" not in argv or not argv[argv.index("--maxmemory-policy") + 1].startswith(("volatile-", "allkeys-")):
        errs.append(f"{where}: no eviction policy (a full store would refuse writes)")

errs = []
try:
    for r in reps:
        st = store_of(sv[r].get("command", []))
        if st is None: errs.append(f"{r}: no --session-store"); continue
        host, port = st
        rs = sv.get(host)
        if rs is None: errs.append(f"{r}: --session-store names {host}, not a service"); continue
        redis_args_ok(rs.get("command", []), f"compose {host}")
        if str(port) not in [str(p) for p in rs.get("expose", [])] or rs.get("ports"):
            errs.append(f"compose {host}: does not expose {port} (only) inside the network")
        if sv[r].get("depends_on", {}).get(host, {}).get("condition") != "service_healthy":
            errs.append(f"{r}: does not wait for {host} to be healthy")
except Exception as e:
    errs.append(repr(e))
report(not errs, "docker-compose.yml: every replica runs --session-store redis://redis:6379, a healthy, unpublished Redis service with an eviction policy", "; ".join(errs))

errs = []
svcs = {s["metadata"]["name"]: s for s in kinds.get("Service", [])}
all_deps = kinds.get("Deployment", [])
for d in deps:
    name = d["metadata"]["name"]
    st = store_of(d["spec"]["template"]["spec"]["containers"][0].get("args", []))
    if st is None: errs.append(f"{name}: no --session-store"); continue
    host, port = st
    svc = svcs.get(host)
    if svc is None: errs.append(f"{name}: --session-store names {host}, not a Service"); continue
    if port not in [p["port"] for p in svc["spec"]["ports"]]: errs.append(f"Service {host} has no port {port}")
    sel = svc["spec"]["selector"]
    backing = [x for x in all_deps if not (sel.items() - x["spec"]["template"]["metadata"]["labels"].items())]
    if len(backing) != 1: errs.append(f"Service {host} selects {len(backing)} Deployments"); continue
    (ctr,) = backing[0]["spec"]["template"]["spec"]["containers"]
    redis_args_ok(ctr.get("command", []) + ctr.get("args", []), f"Deployment {backing[0]['metadata']['name']}")
    if svc["spec"].get("type", "ClusterIP") != "ClusterIP": errs.append(f"Service {host} is not cluster-internal")
report(not errs, "k8s: every ssmd Deployment runs --session-store redis://ssmd-redis:6379, a ClusterIP Service over one Redis Deployment with an eviction policy", "; ".join(errs))
