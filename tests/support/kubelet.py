"""Run one container of a rendered pod the way a kubelet and a container runtime would.

A test that starts an engine from the development virtualenv, with flags of its own,
proves nothing about the Deployment we render. This module takes the pod spec from
`mtd manifests` and runs its container as a node does:

* **its own network namespace** with one address (the pod IP), reached from here over a
  veth pair, so the container binds its port as it would in a pod;
* **its own root** (a private mount namespace and `chroot`): the host's system folders
  read-only stand in for the image's, the image's virtualenv at its own path, and each
  volume mounted at its `mountPath` (a ConfigMap as one file per key, an `emptyDir` as a
  fresh writable folder, a PersistentVolumeClaim as the folder given for the claim),
  read-only where the mount or the volume says so;
* **its securityContext**: `runAsUser`/`runAsGroup` (no passwd entry is made for them),
  `fsGroup` as a supplementary group, and every capability dropped when the container
  drops ALL (a root process then has no CAP_DAC_OVERRIDE, as TGI's pod);
* **its env, command and args**, with `$(VAR)` references expanded as the kubelet does
  (k8s.io/kubernetes third_party/forked/golang/expansion: `$$` is a literal `$`, an
  undefined `$(NAME)` stays as written), on top of the image's own env (`PATH`).

Needs root (namespaces, mounts, setuid); the tests that use it skip elsewhere.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SYSTEM_DIRS = ("usr", "etc", "bin", "sbin", "lib", "lib64", "dev", "proc", "sys")
_IDS = itertools.count(1)
_VAR = re.compile(r"\$(\$|\(([^)]*)\))")


def can_run_pods() -> str | None:
    """None when this machine can run pod sandboxes, else why not."""
    if os.geteuid() != 0:
        return "running a pod as its uid needs root (namespaces, mounts, setuid)"
    for tool in ("ip", "unshare", "chroot", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion of command, args and env values."""

    def one(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name = match.group(2)
        return env[name] if name in env else match.group(0)

    return _VAR.sub(one, text)


@dataclass
class Pod:
    """One running container of a pod; `url(port)` is how other pods reach it."""

    name: str
    ip: str
    process: subprocess.Popen[bytes]
    log_path: Path
    netns: str
    host_if: str
    scratch: Path
    cleanups: list[Any] = field(default_factory=list)
    owns_network: bool = True  # False: it joined another container's pod network

    def url(self, port: int) -> str:
        return f"http://{self.ip}:{port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, port: int, path: str = "/health", timeout: float = 300.0) -> None:
        """Wait as a readiness probe would; fail with the container's log if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited {self.process.returncode}:\n{self.logs()}"
                )
            try:
                if httpx.get(self.url(port) + path, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        raise AssertionError(f"{self.name} not ready after {timeout:.0f} s:\n{self.logs()[-6000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        if self.owns_network:
            subprocess.run(["ip", "netns", "del", self.netns], check=False, capture_output=True)
            subprocess.run(["ip", "link", "del", self.host_if], check=False, capture_output=True)
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> Pod:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _config_map_dir(root: Path, data: Mapping[str, str]) -> Path:
    """A ConfigMap volume: one file per key, readable by every uid (defaultMode 0644)."""
    root.mkdir(parents=True)
    for key, value in data.items():
        (root / key).write_text(value)
        (root / key).chmod(0o644)
    root.chmod(0o755)
    return root


def pod_number() -> int:
    """A number no other live pod of this machine's test runs has: it names the pod's
    network namespace and interfaces and picks its subnet (62,500 of them). Each pytest
    worker (`make test` runs two, PYTEST_XDIST_WORKER gwN) has its own range of 12,500,
    and each run within it a block of 100 by its pid; up to 100 pods a run."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return int(worker or 0) % 4 * 12500 + os.getpid() % 125 * 100 + next(_IDS) % 100


def run_container(
    pod_spec: dict[str, Any],
    *,
    image_venv: Path,
    claims: Mapping[str, Path],
    config_maps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    node_env: Mapping[str, str] | None = None,
    container: str | None = None,
    network_of: Pod | None = None,
) -> Pod:
    """Start `container` (default: the first; init containers, sidecars among them, by
    name) of `pod_spec` in a sandbox of its own; with `network_of`, in that container's
    pod network (containers of one pod share it: localhost is theirs).

    `image_venv` holds the image's Python contents (its `bin` leads the image's PATH);
    `claims` maps a PersistentVolumeClaim name to the host folder that backs it;
    `config_maps` maps a ConfigMap name to its data, `secrets` a Secret's name to its
    (decoded) data, for `secretKeyRef` env. `node_env` is what the node adds,
    named in the test (e.g. the CPU build's KV-cache size); it never overrides the pod's.
    """
    candidates = [*pod_spec["containers"], *pod_spec.get("initContainers", [])]
    spec = next(c for c in candidates if container is None or c["name"] == container)
    number = pod_number()
    name = f"pod{os.getpid() % 10000}-{number}"
    subnet = (number % 250) + 1, (number // 250) % 250
    host_ip, pod_ip = f"10.200.{subnet[1]}.{subnet[0]}", f"10.201.{subnet[1]}.{subnet[0]}"
    netns, host_if, pod_if = f"mtd-{name}", f"mh{number}", f"mp{number}"
    scratch = Path(tempfile.mkdtemp(prefix=f"mtd-{name}-", dir="/tmp"))
    scratch.chmod(0o755)

    pod_security = pod_spec.get("securityContext") or {}
    security = {**pod_security, **(spec.get("securityContext") or {})}
    uid = int(security.get("runAsUser", 0))
    gid = int(security.get("runAsGroup", uid))
    fs_group = pod_security.get("fsGroup")

    # Volumes as the kubelet lays them out.
    volumes: dict[str, tuple[Path, bool]] = {}
    for volume in pod_spec.get("volumes", []):
        vname = volume["name"]
        if "persistentVolumeClaim" in volume:
            source = volume["persistentVolumeClaim"]
            volumes[vname] = (claims[source["claimName"]], bool(source.get("readOnly")))
        elif "configMap" in volume:
            data = config_maps.get(volume["configMap"]["name"])
            if data is None and not volume["configMap"].get("optional"):
                raise AssertionError(f"ConfigMap {volume['configMap']['name']} is missing")
            volumes[vname] = (_config_map_dir(scratch / "cm" / vname, data or {}), True)
        elif "emptyDir" in volume:
            folder = scratch / "empty" / vname
            folder.mkdir(parents=True)
            folder.chmod(0o777)  # the kubelet makes emptyDir world-writable
            volumes[vname] = (folder, False)
        else:
            raise AssertionError(f"volume {vname}: kind not supported here: {sorted(volume)}")

    # Each is bind-mounted into the pod's own root, whose parent folders are ours (0755):
    # only the folder itself must let the pod's uid in, as on a node.
    if uid and image_venv.stat().st_mode & 0o005 != 0o005:
        raise AssertionError(f"{image_venv} is not readable by uid {uid} (chmod a+rX)")

    image_env = {
        "PATH": f"{image_venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    }
    env: dict[str, str] = {**image_env, **(node_env or {})}
    for item in spec.get("env", []):
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None:  # a missing Secret or key keeps the container from starting
            value = (secrets or {}).get(ref["name"], {}).get(ref["key"])
            if value is None:
                raise AssertionError(
                    f"env {item['name']}: Secret {ref['name']} has no {ref['key']}"
                )
            env[item["name"]] = value
        elif "value" in item:
            env[item["name"]] = expand(item["value"], env)
        else:
            raise AssertionError(f"env {item['name']}: only values and secretKeyRef here")
    argv = [expand(a, env) for a in [*spec.get("command", []), *spec.get("args", [])]]

    root = scratch / "root"
    root.mkdir()
    lines = ["set -e", f"R={shlex.quote(str(root))}", 'mount -t tmpfs -o mode=0755 tmpfs "$R"']
    for folder in SYSTEM_DIRS:
        host = Path("/") / folder
        if host.is_symlink():
            lines.append(f'ln -s {shlex.quote(os.readlink(host))} "$R/{folder}"')
        elif host.is_dir():
            lines += [f'mkdir -p "$R/{folder}"', f'mount --rbind /{folder} "$R/{folder}"']
    lines += ['mkdir -p "$R/tmp"', 'mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"']
    mounts = []
    for mount in spec.get("volumeMounts", []):
        source, volume_ro = volumes[mount["name"]]
        mounts.append((str(source), mount["mountPath"], volume_ro or bool(mount.get("readOnly"))))
    # The image's files last: a volume at /tmp (the serving pod has one) must not hide a
    # stand-in venv that happens to live under /tmp here, as no image keeps its Python there.
    mounts.append((str(image_venv), str(image_venv), True))
    for source, target, read_only in mounts:
        quoted = shlex.quote(target.lstrip("/"))
        lines += [f'mkdir -p "$R/"{quoted}', f'mount --bind {shlex.quote(source)} "$R/"{quoted}']
        if read_only:
            lines.append(f'mount -o remount,bind,ro "$R/"{quoted}')
    identity = ["setpriv", f"--reuid={uid}", f"--regid={gid}"]
    identity += [f"--groups={fs_group}"] if fs_group is not None else ["--clear-groups"]
    if "ALL" in (security.get("capabilities") or {}).get("drop", []):
        identity += ["--inh-caps=-all", "--bounding-set=-all"]
    if security.get("allowPrivilegeEscalation") is False:
        identity.append("--no-new-privs")
    environment = ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
    workdir = shlex.quote(spec.get("workingDir", "/"))
    enter = shlex.quote(f'cd {workdir} && exec "$@"')
    lines.append(
        f'exec chroot "$R" {shlex.join(identity)} {shlex.join(environment)} '
        f"/bin/sh -c {enter} - {shlex.join(argv)}"
    )
    script = scratch / "start.sh"
    script.write_text("\n".join(lines) + "\n")

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    if network_of is not None:
        netns, host_if, pod_ip = network_of.netns, network_of.host_if, network_of.ip
    else:
        _pod_network(ip, netns, host_if, pod_if, host_ip, pod_ip)
    log_path = scratch / "container.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private",
             "/bin/sh", str(script)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    return Pod(name, pod_ip, process, log_path, netns, host_if, scratch,
               owns_network=network_of is None)  # fmt: skip


def _pod_network(ip: Any, netns: str, host_if: str, pod_if: str, host_ip: str, pod_ip: str) -> None:
    """A network namespace with one address, reached from here over a veth pair."""
    ip("netns", "add", netns)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", pod_if)
        ip("link", "set", pod_if, "netns", netns)
        ip("addr", "add", f"{host_ip}/32", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("route", "add", f"{pod_ip}/32", "dev", host_if)
        ip("-n", netns, "addr", "add", f"{pod_ip}/32", "dev", pod_if)
        ip("-n", netns, "link", "set", pod_if, "up")
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "route", "add", f"{host_ip}/32", "dev", pod_if)
        ip("-n", netns, "route", "add", "default", "via", host_ip, "dev", pod_if, "onlink")
    except subprocess.CalledProcessError as exc:
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)
        raise AssertionError(f"pod network: {exc.stderr.decode()}") from None
