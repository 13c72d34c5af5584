"""The house rules the import-linter contract cannot see: no library-internal import inside a
function, no private name used across modules, no two public root names differing by case."""

import ast
import inspect
import pathlib

import pytest

import gradchain as gc

PACKAGE = pathlib.Path(gc.__file__).parent


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _function_level_gradchain_imports(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if (isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("gradchain")) or (isinstance(inner, ast.Import) and any(a.name.startswith("gradchain") for a in inner.names)):
                    lines.append(inner.lineno)
    return lines


def test_no_library_internal_import_inside_a_function():
    offenders = {
        str(path.relative_to(PACKAGE)): lines
        for path in _modules()
        if (lines := _function_level_gradchain_imports(ast.parse(path.read_text())))
    }
    assert offenders == {}


def test_the_check_sees_a_function_level_import():
    source = "def f():\n    from gradchain.core import tree\n    return tree\n"
    assert _function_level_gradchain_imports(ast.parse(source)) == [2]


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gradchain"):
                offenders += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert offenders == []


def test_no_two_public_root_names_differ_only_by_case():
    lowered = {}
    for name in gc.__all__:
        lowered.setdefault(name.lower(), []).append(name)
    assert [names for names in lowered.values() if len(names) > 1] == []


def test_an_old_root_name_warns_and_points_to_its_new_home():
    with pytest.warns(DeprecationWarning, match=r"gradchain\.modules\.Adam"):
        assert gc.Adam is gc.modules.Adam
    with pytest.warns(DeprecationWarning, match=r"gradchain\.wrappers\.inject_hyperparams"):
        assert gc.live is gc.inject_hyperparams
    with pytest.warns(DeprecationWarning, match=r"gradchain\.modules\.registry"):
        assert gc.list_modules()["adam"] is gc.modules.Adam
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        gc.nonexistent  # noqa: B018


@pytest.mark.parametrize(
    "preset, module",
    [
        (gc.adam, gc.modules.Adam),
        (gc.yogi, gc.modules.Yogi),
        (gc.rmsprop, gc.modules.RMSProp),
        (gc.adagrad, gc.modules.AdaGrad),
        (gc.l1_normed, gc.modules.L1Normalize),
        (gc.l2_normed, gc.modules.L2Normalize),
        (gc.signed, gc.modules.Sign),
        (gc.l1q_normed, gc.modules.L1qNormalize),
        (gc.top_q, gc.modules.TopQ),
        (gc.frank_wolfe, gc.modules.FrankWolfe),
    ],
)
def test_a_preset_and_its_module_take_positional_arguments_in_the_same_order(preset, module):
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ours = [p.name for p in inspect.signature(preset).parameters.values() if p.kind in kinds]
    ours = [name for name in ours if name != "lrate"]
    theirs = [f.name for f in module.config_fields() if not f.kw_only]
    assert ours == theirs[: len(ours)]


def test_the_package_version_is_the_distribution_version():
    from importlib.metadata import version

    assert gc.__version__ == version("gradchain")
