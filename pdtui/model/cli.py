"""`pdtui validate` and `pdtui render`."""

from __future__ import annotations

import argparse
import sys

from pdtui.clipaths import PathError, expand_user, input_file_problem
from pdtui.text import plural


def register(subparsers: argparse._SubParsersAction) -> None:
    validate = subparsers.add_parser(
        "validate",
        help="check a profile: schema, ports, GPUs, PD consistency",
        description="Exit 0 when the profile is valid (warnings allowed), 1 with every problem otherwise.",
    )
    validate.add_argument("profile", help="profile file, or the name of a preset such as 1p1d")
    validate.add_argument("--host-checks", action="store_true", help="also check this machine: ports in use, GPU indices")
    validate.add_argument("--json", action="store_true", help="print the problems as JSON")
    validate.set_defaults(func=run_validate)

    render = subparsers.add_parser(
        "render",
        help="write the LMCache YAMLs, plan.json and a standalone launch.sh",
        description="Render what pdtui would start, so the deployment can also run without pdtui.",
    )
    render.add_argument("profile", help="profile file, or the name of a preset")
    render.add_argument("-o", "--output", required=True, help="directory to write into")
    render.add_argument("--python", default=None, help="interpreter for the proxy/simulator (default: this one)")
    render.add_argument("--target", choices=("local", "k8s"), default="local",
                        help="local: LMCache YAMLs, plan.json, launch.sh; k8s: manifests for `kubectl apply -f DIR` (docs/cluster.md)")
    render.add_argument("--image", default=None, help="k8s: the engines' image (default lmcache/vllm-openai:latest)")
    render.add_argument("--proxy-image", default=None, help="k8s: the proxy's image, with pdtui installed (default: --image)")
    render.add_argument("--namespace", default=None, help="k8s: namespace of every object (default: kubectl's)")
    render.add_argument("--secret", default=None, help="k8s: the Secret that secret env keys refer to (default PROFILE-secrets)")
    render.set_defaults(func=run_render)


def _print_problems(validation, stream) -> None:
    for problem in validation.problems:
        print(problem.format(validation.source), file=stream)


def run_validate(args: argparse.Namespace) -> int:
    import json

    from pdtui.model.hostchecks import check_host
    from pdtui.model.validate import validate_file

    path = _profile_file(args.profile)
    validation = validate_file(path)
    if args.host_checks and validation.profile is not None:
        count, error = _gpu_count()
        validation.problems.extend(check_host(validation.profile, count, gpu_error=error))
    if args.json:
        print(
            json.dumps(
                {"source": validation.source, "ok": validation.ok, "problems": [p.to_dict() for p in validation.problems]},
                indent=2,
            )
        )
    else:
        _print_problems(validation, sys.stdout if validation.ok else sys.stderr)
        if validation.ok:
            print(f"{validation.source}: valid ({plural(len(validation.warnings), 'warning')})")
        else:
            print(f"{validation.source}: {plural(len(validation.errors), 'error')}, {plural(len(validation.warnings), 'warning')}", file=sys.stderr)
    return 0 if validation.ok else 1


def _gpu_count() -> tuple[int | None, str | None]:
    from pdtui.gpus import gpu_count  # the GPU layer knows every NVML failure mode

    return gpu_count()


def _profile_file(name_or_path: str):
    from pdtui.model.presets import resolve_profile_path

    path = resolve_profile_path(name_or_path)
    problem = input_file_problem(path)
    if problem:
        raise PathError(name_or_path, problem + (" (nor the name of a preset in configs/)" if problem == "no such file" else ""))
    return path


def run_render(args: argparse.Namespace) -> int:
    from pdtui.clipaths import output_dir_problem, reason_of
    from pdtui.model.render import render_plan, write_rendered
    from pdtui.model.validate import validate_file

    path = _profile_file(args.profile)
    out = expand_user(args.output).resolve()
    problem = output_dir_problem(out)
    if problem:
        raise PathError(args.output, problem)
    validation = validate_file(path)
    profile = validation.profile
    if profile is None or not validation.ok:
        _print_problems(validation, sys.stderr)
        print(f"{validation.source}: not rendered, fix the errors first", file=sys.stderr)
        return 1
    _print_problems(validation, sys.stderr)
    if getattr(args, "target", "local") == "k8s":
        return _render_k8s(profile, out, args)
    plan = render_plan(profile, out, python=args.python)
    try:
        written = write_rendered(plan, out)
    except OSError as exc:
        raise PathError(exc.filename or args.output, reason_of(exc)) from None
    for path in written:
        print(path)
    return 0


def _render_k8s(profile, out, args: argparse.Namespace) -> int:
    from pdtui.model.files import atomic_write
    from pdtui.model.k8s import DEFAULT_IMAGE, K8sOptions, K8sRenderError, manifests_text, render_k8s

    options = K8sOptions(image=args.image or DEFAULT_IMAGE, proxy_image=args.proxy_image, namespace=args.namespace,
                         secret_name=args.secret, python=args.python or "python3")
    try:
        files = render_k8s(profile, options)
    except K8sRenderError as exc:
        print(f"pdtui render --target k8s: {exc}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    for name, manifests in files.items():
        atomic_write(out / name, manifests_text(manifests))
        print(out / name)
    return 0
