"""Real upstream trees for the mirror sync tests, built with the distributions' own tools.

- :class:`AptRepo`: packages built with ``dpkg-deb``, indices with ``apt-ftparchive``, ``InRelease``
  clear-signed with a throwaway ``gpg`` key (:class:`GpgKey`), written to a temporary file and
  renamed (a ``> Release`` redirect would hash a half-written file).
- :func:`build_yum_repo`: RPM-less yum metadata is not a yum repo, so packages are real RPMs built
  with ``rpmbuild`` when it is installed, else minimal files and ``createrepo_c`` metadata.
- :class:`RsyncDaemon`: ``rsync --daemon --no-detach`` on a loopback port (or in a namespace),
  serving a directory as module ``up``.
- :class:`HttpService`: bootyard's HTTP service (``python -m services.http``) serving a mirror root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(argv, **kwargs) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120,
                          **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


class GpgKey:
    """A throwaway signing key (ed25519, no passphrase) in its own home directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, mode=0o700, exist_ok=True)
        run(["gpg", "--homedir", home, "--batch", "--passphrase", "", "--quick-gen-key",
             "bootyard test <test@bootyard.invalid>", "ed25519", "sign", "never"])
        self.public = home / "public.gpg"
        self.public.write_bytes(subprocess.run(
            ["gpg", "--homedir", str(home), "--export"], capture_output=True, check=True).stdout)

    def close(self) -> None:
        """Stop the gpg-agent that gpg started for this home directory (it outlives the test)."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
                       capture_output=True, timeout=30, check=False)

    def clearsign(self, source: Path, target: Path) -> None:
        tmp = target.with_name(target.name + ".tmp")
        run(["gpg", "--homedir", self.home, "--batch", "--yes", "--clearsign", "--digest-algo",
             "SHA256", "-o", tmp, source])
        os.rename(tmp, target)


class AptRepo:
    """A one-suite (``stable``, component ``main``, amd64) apt repository under ``root``."""

    def __init__(self, root: Path, key: GpgKey, suite: str = "stable") -> None:
        self.root = root
        self.key = key
        self.suite = suite
        self.build = root.parent / f"{root.name}-build"
        self.stamped = 0  # the mtime (whole seconds) the last index files were given
        root.mkdir(parents=True, exist_ok=True)
        self.build.mkdir(parents=True, exist_ok=True)

    def add_package(self, name: str, version: str = "1.0", payload: int = 1000) -> Path:
        """Build ``name_version_all.deb`` into pool/main/ (``payload`` bytes of data inside)."""
        pkg = self.build / f"{name}-{version}"
        shutil.rmtree(pkg, ignore_errors=True)
        (pkg / "DEBIAN").mkdir(parents=True)
        (pkg / "DEBIAN" / "control").write_text(textwrap.dedent(f"""\
            Package: {name}
            Version: {version}
            Architecture: all
            Maintainer: bootyard tests <test@bootyard.invalid>
            Description: test package {name}
            """))
        data = pkg / "usr" / "share" / name
        data.mkdir(parents=True)
        (data / "payload").write_bytes(os.urandom(payload))
        pool = self.root / "pool" / "main" / name[0] / name
        pool.mkdir(parents=True, exist_ok=True)
        deb = pool / f"{name}_{version}_all.deb"
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", pkg, deb])
        return deb

    def remove_package(self, name: str) -> None:
        shutil.rmtree(self.root / "pool" / "main" / name[0] / name)

    def packages_text(self) -> str:
        return run(["apt-ftparchive", "packages", "pool/main"], cwd=self.root)

    def index(self, *, sign: bool = True, write_packages: bool = True) -> None:
        """Write Packages, Packages.gz, Release and InRelease for what is in pool/."""
        binary = self.root / "dists" / self.suite / "main" / "binary-amd64"
        binary.mkdir(parents=True, exist_ok=True)
        if write_packages:
            text = self.packages_text()
            _replace(binary / "Packages", text.encode())
            run(["gzip", "-9nkf", binary / "Packages"])
            self._stamp(binary / "Packages", binary / "Packages.gz")
        self.release(sign=sign)

    def release(self, *, sign: bool = True) -> None:
        dist = self.root / "dists" / self.suite
        # hashed from a hard-linked copy without the suite's own Release and InRelease, so the
        # new Release does not list the old one (the upstream's files stay as they are meanwhile)
        view = self.build / "release-view"
        shutil.rmtree(view, ignore_errors=True)
        shutil.copytree(dist, view, copy_function=os.link,
                        ignore=lambda d, names: [n for n in names if Path(d) == dist
                                                 and n in ("Release", "InRelease")])
        text = run(["apt-ftparchive", "-o", "APT::FTPArchive::Release::Origin=bootyard-test",
                    "-o", f"APT::FTPArchive::Release::Suite={self.suite}",
                    "-o", f"APT::FTPArchive::Release::Codename={self.suite}",
                    "-o", "APT::FTPArchive::Release::Architectures=amd64",
                    "-o", "APT::FTPArchive::Release::Components=main",
                    "release", "."], cwd=view)
        tmp = self.build / "Release"
        tmp.write_text(text)
        if sign:
            self.key.clearsign(tmp, dist / "InRelease")
        os.rename(tmp, dist / "Release")
        self._stamp(*(dist / name for name in ("Release", "InRelease") if (dist / name).exists()))

    def _stamp(self, *paths: Path) -> None:
        """Give freshly written index files an mtime at least a second after the last ones. A
        real archive publishes minutes apart; a test's two publishes can fall in one second,
        and an apt client's If-Modified-Since (whole seconds) then gets a 304 for the new
        InRelease and keeps the old index (seen once: "Unable to locate package newpkg")."""
        self.stamped = max(int(time.time()), self.stamped + 1)
        for path in paths:
            os.utime(path, (self.stamped, self.stamped))

    def sources_line(self, base_url: str) -> str:
        return f"deb [signed-by={self.key.public}] {base_url} {self.suite} main\n"


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.rename(tmp, path)


def build_rpm(workdir: Path, name: str, version: str = "1.0", payload: int = 1000) -> Path:
    """A real noarch RPM built with ``rpmbuild`` holding ``payload`` random bytes."""
    top = workdir / f"rpmbuild-{name}-{version}"
    shutil.rmtree(top, ignore_errors=True)
    (top / "SPECS").mkdir(parents=True)
    (top / "SOURCES").mkdir()
    (top / "SOURCES" / "payload").write_bytes(os.urandom(payload))
    spec = top / "SPECS" / f"{name}.spec"
    spec.write_text(textwrap.dedent(f"""\
        Name: {name}
        Version: {version}
        Release: 1
        Summary: test package {name}
        License: MIT
        BuildArch: noarch
        %description
        test package {name}
        %install
        mkdir -p %{{buildroot}}/usr/share/{name}
        cp %{{_sourcedir}}/payload %{{buildroot}}/usr/share/{name}/payload
        %files
        /usr/share/{name}/payload
        """))
    run(["rpmbuild", "--quiet", "--define", f"_topdir {top}", "--define", "_build_id_links none",
         "--nodeps", "-bb", spec])
    return next((top / "RPMS" / "noarch").glob("*.rpm"))


def build_yum_repo(root: Path, workdir: Path, packages: dict[str, str]) -> None:
    """A yum repository under ``root``: real RPMs ({name: version}) in Packages/ and
    createrepo_c metadata (gzip, so the check reads it without zstd)."""
    (root / "Packages").mkdir(parents=True, exist_ok=True)
    for name, version in packages.items():
        rpm = build_rpm(workdir, name, version)
        shutil.copy(rpm, root / "Packages" / rpm.name)
    run(["createrepo_c", "--quiet", "--general-compress-type=gz", root])


class RsyncDaemon:
    """``rsync --daemon`` on 127.0.0.1 serving ``path`` as module ``up``."""

    def __init__(self, workdir: Path, path: Path, *, ns=None, address: str = "127.0.0.1",
                 port: int | None = None) -> None:
        self.workdir = workdir
        self.path = path
        self.ns = ns
        self.address = address
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "rsyncd.conf"
        self.config.write_text(textwrap.dedent(f"""\
            pid file = {workdir}/rsyncd.pid
            use chroot = false
            [up]
                path = {path}
                read only = true
                uid = root
                gid = root
            """))

    @property
    def url(self) -> str:
        return f"rsync://{self.address}:{self.port}/up/"

    def start(self) -> None:
        (self.workdir / "rsyncd.pid").unlink(missing_ok=True)
        argv = ["rsync", "--daemon", "--no-detach", f"--config={self.config}",
                f"--address={self.address}", f"--port={self.port}",
                f"--log-file={self.workdir}/rsyncd.log"]
        if self.ns is not None:
            argv = self.ns.cmd(*argv)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = ["rsync", "--list-only", "--contimeout=2", "--timeout=2", self.url]
            if self.ns is not None:
                probe = self.ns.cmd(*probe)
            if subprocess.run(probe, capture_output=True, timeout=10).returncode == 0:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsync daemon exited {self.proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError("rsync daemon did not answer within 10 s")

    def kill(self) -> None:
        """Kill the daemon and every transfer process it forked (they share its session)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()


class HttpService:
    """``python -m services.http`` on loopback serving ``mirror_root`` under /mirror/."""

    def __init__(self, tmp: Path, redis_url: str, mirror_root: Path) -> None:
        self.port = free_port()
        self.log = tmp / "http.log"
        images = tmp / "http-images"
        images.mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTYARD_")}
        self.env.update({
            "BOOTYARD_REDIS_URL": redis_url, "BOOTYARD_HTTP__HOST": "127.0.0.1",
            "BOOTYARD_HTTP__PORT": str(self.port), "BOOTYARD_HTTP__ADMIN_PORT": str(free_port()),
            "BOOTYARD_HTTP__METRICS_HOST": "127.0.0.1",
            "BOOTYARD_HTTP__METRICS_PORT": str(free_port()),
            "BOOTYARD_HTTP__TOKEN_SECRET": "x" * 32,
            "BOOTYARD_HTTP__IMAGES_ROOT": str(images),
            "BOOTYARD_HTTP__MIRROR_ROOT": str(mirror_root),
            "BOOTYARD_HTTP__TEMPLATES_DIR": str(REPO / "templates"),
            "PYTHONPATH": str(REPO),
        })
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "services.http"], cwd=REPO,
                                     env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "wb"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"http service exited: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/mirror/", timeout=1):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"http service did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class AptClient:
    """apt-get with a private configuration: its own Dir, sources list and keyring."""

    def __init__(self, home: Path, sources_line: str) -> None:
        self.home = home
        etc = home / "etc" / "apt"
        for d in (etc / "apt.conf.d", etc / "preferences.d", etc / "sources.list.d",
                  etc / "trusted.gpg.d", home / "var" / "lib" / "apt" / "lists" / "partial",
                  home / "var" / "cache" / "apt" / "archives" / "partial",
                  home / "var" / "lib" / "dpkg", home / "download"):
            d.mkdir(parents=True, exist_ok=True)
        (home / "var" / "lib" / "dpkg" / "status").touch()
        (etc / "sources.list").write_text(sources_line)
        self.config = home / "apt.conf"
        self.config.write_text(textwrap.dedent(f"""\
            Dir "{home}/";
            Dir::Etc "{etc}/";
            Dir::Etc::parts "{etc}/apt.conf.d/";
            Dir::State::status "{home}/var/lib/dpkg/status";
            APT::Architecture "amd64";
            APT::Architectures {{ "amd64"; }};
            APT::Sandbox::User "root";
            Acquire::Languages "none";
            Acquire::http::Proxy "DIRECT";
            Acquire::Retries "0";
            Debug::NoLocking "true";
            """))

    def apt_get(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, APT_CONFIG=str(self.config), LC_ALL="C")
        done = subprocess.run(["apt-get", "-q", *args], capture_output=True, text=True,
                              env=env, cwd=self.home / "download", timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"apt-get {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done
