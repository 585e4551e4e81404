# BUILD prelude (pants.toml: [GLOBAL].build_file_prelude_globs): the one definition of a framework
# image. docker/<framework>/BUILD calls framework_image() with only what differs (resolve, engine,
# tuning env, system packages, knobs); the Dockerfile of every framework image is generated here,
# so no stage is ever copied between frameworks. See docker/README.md.
#
# Names used here but not defined (pex_binary, docker_image, env, ...) are BUILD file symbols.
# ruff: noqa: F821

# The image's own Python: the base image's Debian CPython, which every PEX is built for.
PYTHON = "python3.11"
VENV = "/opt/dynamo/venv"
SITE_PACKAGES = VENV + "/lib/python3.11/site-packages"
IMAGE_REPOSITORY = "dynamo"
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

# Console commands our images put on PATH (and the dynamo-images wheel installs): (name, module).
# (Prelude values must be hashable: pairs, not a dict.)
IMAGE_COMMANDS = (
    ("dynamo-launch", "dynamo_images.launch"),
    ("dynamo-health", "dynamo_images.health"),
    ("dynamo-tiny-model", "dynamo_images.tiny_model"),
)

# The venv's layers, least-changing first: (group, slots, distribution patterns). A distribution
# goes to the first group whose patterns match it ("*": whatever no other group takes); within a
# group, to the first slot with room (venv_layers.py). "<engine>" is the framework's engine.
# "<shared>": the distributions every engine resolve locks identically (DYNAMO_SHARED_DISTRIBUTIONS,
# computed from the lockfiles by ./pants), Dynamo's own excepted; first, so that the engine images'
# layer chains share that prefix and Docker stores it once. Engine images only.
VENV_LAYER_GROUPS = (
    ("shared", 7, ("<shared>",)),
    ("cuda", 5, ("nvidia-*", "cuda-*")),
    ("torch", 1, ("torch",)),
    ("triton", 1, ("triton",)),
    ("flashinfer", 1, ("flashinfer-*",)),
    ("engine", 1, ("<engine>",)),
    ("third-party", 4, ("*",)),
    ("dynamo", 1, ("ai-dynamo", "ai-dynamo-runtime", "kvbm")),
)
# Files no distribution owns (interpreter links, pyvenv.cfg): the last venv layer, the slot that
# venv_layers.py calls VENV_SLOT (its tests check the two agree).
VENV_REST_SLOT = "venv"

# AWS EFA variants (upstream's --make-efa): every runtime and dev image also gets `<target>-aws`,
# FROM it, with the Debian packages of docker/base/efa-packages.txt added (docker/base:efa-overlay).
# Labels carry the versions docker/base/efa-packages.lock pins (./pants exports them per package as
# DYNAMO_DEBIAN_<PACKAGE>_VERSION): (label, Debian package).
EFA_SUFFIX = "-aws"
EFA_OVERLAY = "docker/base/efa-overlay.tar.gz"
EFA_LABELS = (
    ("ai.dynamo.efa.libfabric.version", "libfabric1"),
    # rdma-core's user-space libraries (libibverbs and its EFA provider); not the rdma-core
    # package, whose udev rules and services a container does not run.
    ("ai.dynamo.efa.rdma-core.version", "libibverbs1"),
)

# Build metadata, set by ./pants (see the launcher): image labels and tags, applied last.
METADATA_ENV = ("DYNAMO_VERSION", "DYNAMO_COMMIT_SHA", "DYNAMO_SOURCE_URL")

# Every image's CycloneDX SBOM (image_sbom()): at this path in the image, named by this label
# (`dynamo-images sbom IMAGE` reads both), and in dist/ beside the image after ./pants package
# (pants-plugins/image_sbom: dist/docker.vllm/runtime.cdx.json). The base image's SBOM is in dist/ only: a layer of its own would
# move every image built on it.
SBOM_PATH = "/opt/dynamo/sbom.cdx.json"
SBOM_LABEL = "ai.dynamo.sbom"
SBOM_TOOL = "build-support/sbom:make-sbom"

# Files the images take from the build context (our code, the SBOM) reach their layer through a
# first stage that gives them, and every folder above them, root ownership and this mtime, as the
# venv's slots have (venv_layers.FIXED_MTIME; its tests check the two agree): Pants writes the
# context anew for each build and Docker keeps mtimes in layers, so a plain COPY would make a new
# layer ID for the same bytes on every machine.
FIXED_MTIME = 946684800
FILES_STAGE = "fixed-files"
# The Debian packages (and CPython: the SBOM's interpreter for markers and tags) that docker/base
# installed: docker/base:installed-packages, which may be newer than the committed packages.lock.
BASE_PACKAGES_LOCK = "docker/base/installed-packages.lock"

# Knobs: environment variables that `dynamo-images build` sets and these BUILD files read (Pants
# reads env() names statically, so each is spelled out at its one env() call below):
# DYNAMO_CUDA_VERSION, DYNAMO_PLATFORM, DYNAMO_ENABLE_KVBM; DYNAMO_BASE_IMAGE in docker/base/BUILD;
# DYNAMO_REGISTRY and DYNAMO_REGISTRY_LAYOUT (where ./pants publish pushes: _registries()).
# The platform every lock and base root filesystem here is built for.
PLATFORMS = ("linux/amd64",)
# DYNAMO_REGISTRY_LAYOUT -> the pants.toml registry that names the pushed images (default first).
# (Pairs: prelude globals must be hashable.)
REGISTRY_LAYOUTS = (("dynamo", "@publish"), ("upstream", "@publish-upstream"))


class KnobError(ValueError):
    pass


def _env_name(*parts):
    # As build-support/bootstrap/bootstrap.py names the lock variables.
    out = []
    for part in parts:
        word = ""
        for ch in part:
            word += ch.upper() if ch.isalnum() else "_"
        out.append(word)
    return "_".join(out)


def _knob(name, value, accepted, why=""):
    """The knob's value (default: the first accepted), or a one-line error naming the value and
    the accepted ones, raised while Pants reads BUILD files, before any build work."""
    value = value or accepted[0]
    if value not in accepted:
        raise KnobError(
            f"{name}={value!r} is not accepted here; accepted: {', '.join(accepted)}"
            + (f" ({why})" if why else "")
        )
    return value


def _shared_distributions(engine):
    if not engine:
        return ()
    # (Assigned first: Pants finds a BUILD file's env() names in calls, not in env(...).split().)
    listed = env("DYNAMO_SHARED_DISTRIBUTIONS", "")
    shared = [name for name in listed.split(",") if name]
    # Dynamo's own distributions change most often: they keep their late slot.
    late = {p for group, _, patterns in VENV_LAYER_GROUPS if group == "dynamo" for p in patterns}
    return tuple(name for name in shared if name not in late)


def _layer_groups(engine):
    """VENV_LAYER_GROUPS with <engine> and <shared> expanded; the shared group only when there
    is something to share."""
    groups = []
    for group, slots, patterns in VENV_LAYER_GROUPS:
        expanded = []
        for pattern in patterns:
            if pattern == "<engine>":
                expanded += list(engine)
            elif pattern == "<shared>":
                expanded += list(_shared_distributions(engine))
            else:
                expanded.append(pattern)
        if "<shared>" in patterns and not expanded:
            continue
        groups.append((group, slots, tuple(expanded)))
    return groups


def slot_names(engine=()):
    names = []
    for group, slots, _ in _layer_groups(engine):
        names += [group] if slots == 1 else [f"{group}-{i}" for i in range(1, slots + 1)]
    return names + [VENV_REST_SLOT]


def _layer_spec(engine):
    return " ".join(
        f"{group}:{slots}:{','.join(patterns) or '-'}" for group, slots, patterns in _layer_groups(engine)
    )


def _shims():
    # Our console commands: shims into the venv (our code is a later layer; a shim never changes).
    lines = []
    for name, module in IMAGE_COMMANDS:
        lines.append(
            f" && printf '#!/bin/sh\\nexec {VENV}/bin/python -m {module} \"$@\"\\n' > {VENV}/bin/{name}"
            f" && chmod 755 {VENV}/bin/{name} \\"
        )
    return lines


def _runtime_instructions(
    deps_pex, framework, engine, env_vars, path, system_overlay, labels, lock_args, links
):
    lines = [
        f"# Generated by framework_image() in pants-plugins/macros.py for {framework}; see docker/README.md.",
        "ARG BASE_IMAGE=docker/base:runtime",
        # The deps PEX is bind-mounted, not COPYed: no 4 GB layer of wheel zips in the cache.
        "FROM $BASE_IMAGE AS payload",
        "USER root",
        f"RUN --mount=type=bind,source={deps_pex},target=/build/deps.pex \\",
        "    --mount=type=bind,source=src/python/dynamo_images/venv_layers.py,target=/build/venv_layers.py \\",
        # PEX_ROOT is scratch: pex extracts every wheel there first.
        f"    PEX_ROOT=/tmp/pex-root PEX_TOOLS=1 {PYTHON} /build/deps.pex venv --scope=deps --collisions-ok {VENV} \\",
        " && rm -rf /tmp/pex-root \\",
        # pex copies each wheel's files from its cache, with any bytecode a tool run from that
        # cache wrote there, and lists it in RECORD: dropped, so that the layers depend on the
        # lock alone (compileall below writes every module's bytecode).
        f" && find {SITE_PACKAGES} -name __pycache__ -type d -prune -exec rm -rf {{}} + \\",
        f" && sed -i -E '\\#(^|/)__pycache__/#d' {SITE_PACKAGES}/*.dist-info/RECORD \\",
        *_shims(),
        # Bytecode for the final paths (the image's user cannot write it); like pip, files with
        # syntax of another Python (torch's py312 test helpers) are skipped, not fatal.
        f" && ({PYTHON} -m compileall -q -j0 --invalidation-mode checked-hash {SITE_PACKAGES} >/dev/null || true) \\",
        f" && {PYTHON} /build/venv_layers.py {VENV} /layers --under {VENV.lstrip('/')}"
        f" --groups '{_layer_spec(engine)}'",
        "",
        "FROM $BASE_IMAGE AS runtime",
        "USER root",
    ]
    for slot in slot_names(engine):
        if slot == "dynamo" and system_overlay:
            # Debian packages the engine loads or builds with: after the engine layers (which
            # another engine's image can share), before Dynamo (which changes more often).
            lines.append(f"ADD {system_overlay} /")
        # Each slot holds the venv's whole path (fixed mtimes): the same files, the same layer.
        lines.append(f"COPY --from=payload /layers/{slot}/ /")
    if links:
        # Paths upstream's images have, as symlinks (after the venv layers other images share).
        lines.append("RUN " + " && ".join(
            f"mkdir -p {link.rsplit('/', 1)[0]} && ln -s {target} {link}" for link, target in links
        ))
    # Our code straight from its files (_code_files()): a first-party change rebuilds only this
    # small layer.
    lines.append(f"COPY --from={FILES_STAGE} /files/code/ /")
    env_all = {
        "VIRTUAL_ENV": VENV,
        "PATH": ":".join([f"{VENV}/bin", *path, *SYSTEM_PATH]),
        **env_vars,
    }
    lines.append("ENV " + " \\\n    ".join(f'{k}="{v}"' for k, v in env_all.items()))
    lines += [
        "USER dynamo",
        'HEALTHCHECK --interval=30s --timeout=5s --start-period=120s CMD ["dynamo-health"]',
        # Metadata last, so that a new commit or lock changes only these (empty) layers.
        "ARG DYNAMO_IMAGE",
        "ARG DYNAMO_VERSION=unversioned",
        "ARG DYNAMO_COMMIT_SHA=unknown",
        "ARG DYNAMO_SOURCE_URL=unknown",
        *(f"ARG {name}=unknown" for name in lock_args),
        "ENV DYNAMO_IMAGE=$DYNAMO_IMAGE DYNAMO_VERSION=$DYNAMO_VERSION DYNAMO_COMMIT_SHA=$DYNAMO_COMMIT_SHA",
        "LABEL " + " \\\n      ".join(f'{k}="{v}"' for k, v in labels.items()),
    ]
    return lines


DPKG_STATUS_STAGE = "dpkg-status"
DPKG_STATUS_SCRIPT = "src/python/dynamo_images/dpkg_status.py"
DPKG_STATUS_TARGET = "src/python/dynamo_images:dpkg-status-script"


def _overlay_onto(image_arg, overlay, lock=None):
    """(stage, final-stage lines) that ADD the Debian overlay `overlay` onto the image named by
    ARG `image_arg`: each overlay carries the base's dpkg status with its own packages, so the
    status in the image is the union (dpkg_status.py), which keeps what earlier overlays
    installed. `lock`: FILE#SECTION listing the overlay's packages, for an overlay without its
    own record (the base's dev overlay)."""
    mounts = [
        f"--mount=type=bind,source={overlay},target=/build/overlay.tar.gz",
        f"--mount=type=bind,source={DPKG_STATUS_SCRIPT},target=/build/dpkg_status.py",
    ]
    record = ""
    if lock:
        path, section = lock.split("#")
        mounts.append(f"--mount=type=bind,source={path},target=/build/packages.lock")
        record = f" /build/packages.lock#{section}"
    stage = [
        f"FROM ${image_arg} AS {DPKG_STATUS_STAGE}",
        "USER root",
        "RUN " + " \\\n    ".join(mounts) + " \\\n"
        f"    {PYTHON} /build/dpkg_status.py /var/lib/dpkg/status /build/overlay.tar.gz{record}"
        f" > /dpkg-status && touch -d @{FIXED_MTIME} /dpkg-status",
        "",
    ]
    return stage, [
        f"ADD {overlay} /",
        f"COPY --from={DPKG_STATUS_STAGE} /dpkg-status /var/lib/dpkg/status",
    ]


def _dev_instructions(runtime_address, image_name):
    stage, add_overlay = _overlay_onto(
        "RUNTIME_IMAGE", "docker/base/dev-overlay.tar.gz", f"{BASE_PACKAGES_LOCK}#dev"
    )
    return [
        "# Generated by framework_image() in pants-plugins/macros.py; see docker/README.md.",
        "# Developer variant: root, developer tools, pytest, and the source tree at /workspace.",
        f"ARG RUNTIME_IMAGE={runtime_address}",
        *stage,
        "FROM $RUNTIME_IMAGE",
        "USER root",
        *add_overlay,
        "RUN echo '%sudo ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/nopasswd && chmod 440 /etc/sudoers.d/nopasswd \\",
        " && usermod -aG sudo dynamo",
        # pytest & co. in their own venv, visible to the Dynamo venv through a .pth file (appended
        # to sys.path, so the Dynamo venv's own versions win) instead of a second copy of Dynamo.
        "RUN --mount=type=bind,source=docker.base/dev-tools.pex,target=/build/dev-tools.pex \\",
        f"    PEX_ROOT=/tmp/pex-root PEX_TOOLS=1 {PYTHON} /build/dev-tools.pex venv --scope=deps /opt/dynamo/dev-tools \\",
        " && rm -rf /tmp/pex-root \\",
        f" && echo /opt/dynamo/dev-tools/lib/python3.11/site-packages > {SITE_PACKAGES}/dev-tools.pth \\",
        f" && printf '#!/bin/sh\\nexec {VENV}/bin/python -m pytest \"$@\"\\n' > {VENV}/bin/pytest \\",
        f" && chmod 755 {VENV}/bin/pytest",
        # The source tree (//:workspace: every target that owns code, as a tarball owned by dynamo:0).
        "ADD workspace.tar /workspace/",
        "ENV HOME=/root",
        # Spelled out: the runtime image's ENV DYNAMO_IMAGE would win over an ARG of that name.
        f"ENV DYNAMO_IMAGE={image_name}",
        f"LABEL org.opencontainers.image.title={image_name}",
    ]


def image_sbom(name, image_name, inputs, execution_dependencies=()):
    """:<name>-sbom, the CycloneDX SBOM of image :<name>, as <here>/<name>.cdx.json, made by
    build-support/sbom from `inputs`: (flag, value) pairs of make_sbom.py (--python RESOLVE:NAMES,
    --debian FILE[#SECTION], --go GO_MOD, --own; each @LAYER: text of the instruction that adds
    them), or (flag, value, target) where the value is a file that target makes: an input and
    what provides it travel together, so a variant that reuses the inputs gets the file too.
    Returns (file, target) for the image's COPY and dependencies."""
    here = build_file_dir().as_posix()
    out = f"{here}/{name}.cdx.json"
    args = ["--image", image_name, "--output", out, "--interpreter", BASE_PACKAGES_LOCK]
    providers = []
    for flag, value, *provider in inputs:
        args += [flag, value]
        providers += provider
    adhoc_tool(
        name=f"{name}-sbom",
        runnable=SBOM_TOOL,
        args=args,
        execution_dependencies=[
            "//:pants-toml", "3rdparty/python:locks", "docker/base:installed-packages",
            *providers,
            *execution_dependencies,
        ],
        output_files=[out],
        # Its imports would write bytecode into Pex's cache of installed wheels, from which
        # the images' deps PEXes are made.
        extra_env_vars=[
            *METADATA_ENV, "DYNAMO_COMMIT_TIME", "DYNAMO_GO_VERSION", "PYTHONDONTWRITEBYTECODE=1",
        ],
        workdir="/",
        timeout=300,
    )
    return out, f":{name}-sbom"


def base_sbom_inputs():
    """The base's part of an SBOM: Debian packages.lock's runtime section, or, for an upstream
    base (DYNAMO_BASE_IMAGE, docker/base/BUILD), that image's name: its packages are not ours to
    list."""
    external = env("DYNAMO_BASE_IMAGE", "")
    if external:
        return [("--base-image", external)]
    return [("--debian", f"{BASE_PACKAGES_LOCK}#runtime@runtime-rootfs.tar.gz")]


def _files_stage(files):
    """The stage that puts context files at their image paths under /files/<part>/ with the
    fixed mtime, for `COPY --from=fixed-files /files/<part>/ /`. `files`: (part, context path,
    image path, mode)."""
    mounts = [f"--mount=type=bind,source={src},target=/build/{i}" for i, (_, src, _, _) in enumerate(files)]
    installs = [f"install -D -m {mode} /build/{i} /files/{part}{dest}" for i, (part, _, dest, mode) in enumerate(files)]
    return [
        f"FROM $FILES_IMAGE AS {FILES_STAGE}",
        "USER root",
        "RUN " + " \\\n    ".join(mounts)
        + " \\\n    " + " && ".join([*installs, f"find /files -exec touch -h -d @{FIXED_MTIME} {{}} +"]),
        "",
    ]


def _with_files(instructions, files, sbom_file):
    """`instructions` with the files stage first (after the global ARGs, which must precede every
    FROM) and the SBOM's layer last: it names the commit, so only that small layer changes with it."""
    first = next(i for i, line in enumerate(instructions) if line.startswith("FROM "))
    return [
        *instructions[:first],
        # Any image with a shell: the base, which every image here is built on anyway.
        "ARG FILES_IMAGE=docker/base:runtime",
        *_files_stage([*files, ("sbom", sbom_file, SBOM_PATH, "644")]),
        *instructions[first:],
        f"COPY --from={FILES_STAGE} /files/sbom/ /",
    ]


def _image(name, image_name, instructions, dependencies, build_args=(), sbom=None, files=()):
    """A framework image target: repository `dynamo` in the registries of _registries(), tagged
    by those registries from DYNAMO_IMAGE (pants.toml extra_image_tags), e.g. vllm-runtime-aws.
    `sbom`: image_sbom()'s (file, target), its last layer and written beside the image; `files`:
    more context files for the files stage (_files_stage())."""
    sbom_file, sbom_target = sbom
    docker_image(
        name=name,
        instructions=_with_files(instructions, files, sbom_file),
        repository=IMAGE_REPOSITORY,
        registries=_registries(),
        image_tags=[],
        dependencies=[*dependencies, sbom_target],
        extra_build_args=[*build_args, f"DYNAMO_IMAGE={image_name}"],
        sbom=sbom_target,
    )


def _code_files():
    """Our code as the files stage takes it: (part, context path, image path, mode)."""
    modules = ["__init__", *(m.split(".")[-1] for _, m in IMAGE_COMMANDS)]
    return [
        ("code", f"src/python/dynamo_images/{m}.py", f"{SITE_PACKAGES}/dynamo_images/{m}.py", "644")
        for m in modules
    ]


def _efa_instructions(image_address, image_name, user):
    args = [f"DYNAMO_DEBIAN_{_env_name(package)}_VERSION" for _, package in EFA_LABELS]
    labels = {"org.opencontainers.image.title": image_name}
    labels.update((label, "$" + arg) for (label, _), arg in zip(EFA_LABELS, args))
    stage, add_overlay = _overlay_onto("BASE_IMAGE", EFA_OVERLAY)
    return [
        "# Generated by framework_image() in pants-plugins/macros.py; see docker/README.md, EFA.",
        f"ARG BASE_IMAGE={image_address}",
        *stage,
        "FROM $BASE_IMAGE",
        "USER root",
        # Two layers on top: every layer of the image it extends is shared with it.
        *add_overlay,
        f"USER {user}",
        *(f"ARG {arg}=unknown" for arg in args),
        f"ENV DYNAMO_IMAGE={image_name}",
        "LABEL " + " \\\n      ".join(f'{k}="{v}"' for k, v in labels.items()),
    ], args


def _efa_image(name, image_name, user, exclude, sbom_inputs):
    """`:<name>-aws`, the EFA variant of `:<name>` (its context without `exclude`, which that
    image's own build already used); `sbom_inputs`: those of `:<name>`."""
    instructions, args = _efa_instructions(f"{build_file_dir().as_posix()}:{name}", image_name, user)
    sbom = image_sbom(
        name + EFA_SUFFIX, image_name,
        [*sbom_inputs, ("--debian", EFA_OVERLAY, "docker/base:efa-overlay")],
    )
    _image(
        name + EFA_SUFFIX,
        image_name,
        instructions,
        [f":{name}", *(f"!!{e}" for e in exclude), "docker/base:efa-overlay", DPKG_STATUS_TARGET],
        [*args, "DYNAMO_VERSION"],
        sbom,
    )


def _local_dev_instructions(dev_address, image_name):
    return [
        "# Generated by framework_image() in pants-plugins/macros.py; see docker/README.md.",
        "# The dev image with user dynamo remapped to the developer's UID/GID (upstream's local-dev):",
        "# files it writes in a mounted checkout belong to the developer.",
        f"ARG DEV_IMAGE={dev_address}",
        "FROM $DEV_IMAGE",
        "USER root",
        # Defaults: the image's own dynamo user (dynamo-images build passes the caller's).
        "ARG DYNAMO_UID=1000",
        "ARG DYNAMO_GID=0",
        # GID 0 stays a supplementary group (OpenShift's group, which owns the image's files).
        'RUN if [ "$DYNAMO_UID" = 0 ]; then echo "DYNAMO_UID=0 is root; local-dev maps dynamo to a'
        ' non-root UID" >&2; exit 1; fi \\',
        ' && if ! getent group "$DYNAMO_GID" >/dev/null; then groupadd --gid "$DYNAMO_GID" dynamo-host; fi \\',
        ' && usermod --uid "$DYNAMO_UID" --gid "$DYNAMO_GID" --append --groups 0,sudo dynamo \\',
        # usermod moved the home directory's files; /workspace is the other tree dynamo owns.
        ' && chown -R "$DYNAMO_UID:$DYNAMO_GID" /workspace',
        "USER dynamo",
        "ENV HOME=/home/dynamo",
        f"ENV DYNAMO_IMAGE={image_name}",
        f"LABEL org.opencontainers.image.title={image_name} \\",
        '      ai.dynamo.local-dev.uid="$DYNAMO_UID" ai.dynamo.local-dev.gid="$DYNAMO_GID"',
    ]


def _registries():
    """@local, and the publish registry of DYNAMO_REGISTRY_LAYOUT when DYNAMO_REGISTRY is set.

    The tags are those registries' extra_image_tags in pants.toml (upstream's scheme locally:
    dynamo:latest-<framework>-<target> and dynamo:<version>-<framework>-<target>).
    """
    layout = _knob(
        "DYNAMO_REGISTRY_LAYOUT",
        env("DYNAMO_REGISTRY_LAYOUT", ""),
        tuple(name for name, _ in REGISTRY_LAYOUTS),
        "see docker/README.md, Publishing",
    )
    publish = dict(REGISTRY_LAYOUTS)[layout]
    return ["@local", *([publish] if env("DYNAMO_REGISTRY", "") else [])]


def debian_overlay(packages_file, name="system-overlay", lock=None):
    """:<name>, the Debian packages listed in `packages_file` installed on the base's root
    filesystem, as the files they add (a .tar.gz that the image ADDs); also the versions
    installed (system-packages.lock, in the same tarball's /opt/dynamo). With `lock` (a file
    here), the build fails unless Debian installs exactly the versions it lists."""
    here = build_file_dir().as_posix()
    sources = [packages_file, *([lock] if lock else [])]
    files(name=f"{name}-packages", sources=sources)
    out = f"{here}/{name}.tar.gz"
    check = ""
    if lock:
        # The pinned packages' lines of the versions installed, against the lock. (Not in
        # build-overlay.sh: a change there re-runs debootstrap, and the base's layers change.)
        check = (
            f" && tar -xzOf {out} ./opt/dynamo/system-packages.lock"
            f" | awk 'NR == FNR {{ pinned[$1] = 1; next }} $1 in pinned' {here}/{lock} -"
            f" | diff -u {here}/{lock} - >&2"
            f" || {{ echo 'Debian installs other versions than {here}/{lock} pins (diff above);"
            f" if intended, make the lock the + side' >&2; exit 1; }}"
        )
    shell_command(
        name=name,
        command=(
            "bash docker/base/build-overlay.sh docker/base/rootfs/runtime-rootfs.tar"
            f" {here}/{packages_file} {out}" + check
        ),
        workdir="/",
        tools=["bash", "tar", "gzip", "awk", "diff"],
        execution_dependencies=["docker/base:rootfs", "docker/base:scripts", f":{name}-packages"],
        output_files=[out],
        timeout=1800,
        log_output=True,
    )
    return out, f":{name}"


def _runtime_image(
    name, resolve, requirements, engine, engine_package, *, framework, pkg_dir, env_vars, path,
    cuda, overlay, links, labels
):
    """`:<name>-deps` (`:deps` for the runtime image), the closure of `requirements` in `resolve`
    as a packed PEX, and the image `:<name>` that installs it on docker/base:runtime."""
    # Lock digests and locked versions, as ./pants exports them (bootstrap.py build-env); each
    # is a build arg copied from Pants' environment.
    lock = _env_name(resolve)
    engine_package = engine_package or (engine[0] if engine else "ai-dynamo")
    lock_args = {
        "LOCK_DIGEST": f"DYNAMO_LOCK_DIGEST_{lock}",
        "AI_DYNAMO_VERSION": f"DYNAMO_LOCKED_{lock}_AI_DYNAMO_VERSION",
        "AI_DYNAMO_RUNTIME_VERSION": f"DYNAMO_LOCKED_{lock}_AI_DYNAMO_RUNTIME_VERSION",
        "ENGINE_VERSION": f"DYNAMO_LOCKED_{_env_name(resolve, engine_package)}_VERSION",
    }
    lock_vars = tuple(dict.fromkeys(lock_args.values()))  # the engine may be ai-dynamo itself
    worker = engine[0] if engine else "mocker"
    all_labels = {
        "org.opencontainers.image.title": "$DYNAMO_IMAGE",
        "org.opencontainers.image.version": "$DYNAMO_VERSION",
        "org.opencontainers.image.revision": "$DYNAMO_COMMIT_SHA",
        "org.opencontainers.image.source": "$DYNAMO_SOURCE_URL",
        "ai.dynamo.framework": framework,
        "ai.dynamo.engine": worker,
        "ai.dynamo.engine.version": "$" + lock_args["ENGINE_VERSION"],
        "ai.dynamo.version": "$" + lock_args["AI_DYNAMO_VERSION"],
        "ai.dynamo.runtime.version": "$" + lock_args["AI_DYNAMO_RUNTIME_VERSION"],
        "ai.dynamo.cuda.version": cuda,
        f"ai.dynamo.lock.{resolve}": "$" + lock_args["LOCK_DIGEST"],
        **labels,
    }
    deps = "deps" if name == "runtime" else f"{name}-deps"
    all_labels[SBOM_LABEL] = SBOM_PATH
    names = ",".join(r.rsplit("#", 1)[-1] for r in requirements)
    sbom_inputs = [
        *base_sbom_inputs(),
        ("--python", f"{resolve}:{names}"),
        *([("--debian", *overlay)] if overlay[0] else []),
        ("--own", "/files/code/"),
    ]
    sbom = image_sbom(name, f"{framework}-{name}", sbom_inputs)
    # Two PEX layers of one closure would re-zip on every source change; the image takes our code
    # from its files instead, so this PEX depends on the lock alone.
    pex_binary(
        name=deps,
        dependencies=list(requirements),
        resolve=resolve,
        include_sources=False,
        include_tools=True,
        # One zip per wheel, which Pex caches: a lock change re-zips only the changed wheels,
        # and Docker's context transfer skips the unchanged ones.
        layout="packed",
    )
    overlay_path, overlay_target = overlay
    _image(
        name,
        f"{framework}-{name}",
        _runtime_instructions(
            f"{pkg_dir}/{deps}.pex", framework, engine, {"DYNAMO_ENGINE": worker, **env_vars},
            path, overlay_path, all_labels, lock_vars, links,
        ),
        [
            f":{deps}",
            "src/python/dynamo_images:image-code",
            "src/python/dynamo_images:venv-layers-script",
            *([overlay_target] if overlay_target else []),
        ],
        [*METADATA_ENV, *lock_vars],
        sbom,
        _code_files(),
    )
    return sbom_inputs


def framework_image(
    *,
    framework,
    resolve,
    requirements,
    engine=(),
    engine_package=None,
    env_vars=None,
    path=(),
    cuda_toolkit=None,
    links=(),
    system_packages=None,
    cuda_versions=None,
    cuda_why="",
    kvbm_refusal="",
    labels=None,
    engine_lock=True,
    pre_engine=None,
):
    """`:deps` (the resolve's closure as a packed PEX), `:runtime` and `:dev` images of one
    framework, on docker/base:runtime; their EFA variants `:runtime-aws` and `:dev-aws`, and
    `:local-dev` (the dev image with dynamo remapped to the developer's UID/GID).

    framework       the image's name in tags: dynamo:latest-<framework>-runtime
    resolve         the Pants resolve whose lock pins the closure, e.g. "vllm"
    requirements    the python_requirement(s) to install, e.g. ["3rdparty/python:vllm-reqs#ai-dynamo"]
    engine          distributions of the inference engine (their own layer), e.g. ("vllm",)
    engine_package  the distribution whose locked version labels the image (default: engine[0])
    env_vars        tuning environment of the runtime image
    path            more directories for PATH, after the venv's bin (e.g. nvcc's)
    cuda_toolkit    the CUDA toolkit of PyPI's CUDA wheels the JIT kernels compile with, e.g. "cu13"
                    (site-packages/nvidia/cu13: CUDA_HOME, CPATH, ptxas for Triton, nvcc on PATH)
    links           (path, target) symlinks upstream's images have, e.g. SGLang's /sgl-workspace
    system_packages a file here listing Debian packages the engine needs on top of the base
    cuda_versions   CUDA versions the lock's wheels are built for (None: no CUDA in the image)
    kvbm_refusal    why DYNAMO_ENABLE_KVBM=true cannot be honoured ("" would mean it can)
    engine_lock     false: the resolve has no lock yet, so :deps, :runtime and :dev are not defined
                    (an engine without a PyPI route; docker/trtllm/BUILD)
    pre_engine      requirements (default resolve) of a :pre-engine image: the runtime image
                    without the engine, on the same definition
    """
    pkg_dir = build_file_dir().as_posix().replace("/", ".")
    here = build_file_dir().as_posix()
    _knob(
        "DYNAMO_PLATFORM",
        env("DYNAMO_PLATFORM", ""),
        PLATFORMS,
        "the locks and the Debian root filesystems are built for x86_64",
    )
    # An image without CUDA libraries has no CUDA version to choose (the variable is for the engine
    # images of the same run; `dynamo-images build` refuses --cuda-version for it).
    cuda = "none"
    if cuda_versions:
        cuda = _knob("DYNAMO_CUDA_VERSION", env("DYNAMO_CUDA_VERSION", ""), cuda_versions, cuda_why)
    kvbm = env("DYNAMO_ENABLE_KVBM", "")
    if kvbm not in ("", "false"):
        raise KnobError(f"DYNAMO_ENABLE_KVBM={kvbm!r}: not available for {framework}: {kvbm_refusal}")

    overlay_path, overlay_target = None, None
    if system_packages:
        overlay_path, overlay_target = debian_overlay(system_packages)
    path = list(path)
    env_all = dict(env_vars or {})
    if cuda_toolkit:
        # JIT kernels compile with the nvcc and CUDA headers of PyPI's CUDA wheels in the venv;
        # nvcc on PATH, as in upstream's CUDA images.
        toolkit = f"{SITE_PACKAGES}/nvidia/{cuda_toolkit}"
        env_all.update(
            CUDA_HOME=toolkit, CPATH=f"{toolkit}/include", TRITON_PTXAS_PATH=f"{toolkit}/bin/ptxas"
        )
        path.insert(0, f"{toolkit}/bin")
    image = dict(
        framework=framework, pkg_dir=pkg_dir, env_vars=env_all, path=path, cuda=cuda,
        overlay=(overlay_path, overlay_target), links=tuple(links), labels=labels or {},
    )
    if pre_engine:
        # The same image without the engine (Dynamo from `pre_engine`, in the default resolve):
        # everything up to the engine wheel, built and tested where the engine has no source.
        # No CUDA libraries until the engine's closure is in.
        no_cuda = {**image, "cuda": "none"}
        _runtime_image("pre-engine", "python-default", pre_engine, (), None, **no_cuda)
    if not engine_lock:
        return
    runtime_sbom = _runtime_image("runtime", resolve, requirements, tuple(engine), engine_package, **image)
    _efa_image("runtime", f"{framework}-runtime{EFA_SUFFIX}", "dynamo", [":deps"], runtime_sbom)
    # The dev image adds the dev overlay's Debian packages, the dev tools' venv and the tree.
    dev_sbom = [
        *runtime_sbom,
        ("--debian", f"{BASE_PACKAGES_LOCK}#dev@dev-overlay.tar.gz"),
        ("--python", "python-default:pytest@dev-tools.pex"),
        ("--own", "workspace.tar"),
    ]
    _image(
        "dev",
        f"{framework}-dev",
        _dev_instructions(f"{here}:runtime", f"{framework}-dev"),
        [
            ":runtime",
            # The runtime image is built on its own; its PEX is not part of this context.
            "!!:deps",
            "docker/base:dev-tools",
            "docker/base:dev-overlay",
            "docker/base:installed-packages",
            DPKG_STATUS_TARGET,
            "//:workspace",
        ],
        ["DYNAMO_VERSION"],
        image_sbom("dev", f"{framework}-dev", dev_sbom),
    )
    # The dev image's layers were sent with its own build: not this context again.
    dev_inputs = [":deps", "//:workspace"]
    _efa_image("dev", f"{framework}-dev{EFA_SUFFIX}", "root", dev_inputs, dev_sbom)
    _image(
        "local-dev",
        f"{framework}-local-dev",
        _local_dev_instructions(f"{here}:dev", f"{framework}-local-dev"),
        [":dev", *(f"!!{e}" for e in dev_inputs)],
        # dynamo-images build --target local-dev --uid/--gid sets these (default: the caller's).
        ["DYNAMO_UID", "DYNAMO_GID", "DYNAMO_VERSION"],
        image_sbom("local-dev", f"{framework}-local-dev", dev_sbom),
    )
