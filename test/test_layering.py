"""Dependencies run one way: the CLI -> the tools (bench, demo, training, figures) -> the core.

Every import statement of the package counts, at module level or inside a function, read from
the source with :mod:`ast` (nothing is imported). An import resolves to the module it loads:
``from .x import y`` is ``x.y`` when that is a module, else ``x``. The parent packages Python
loads on the way to a submodule are not edges of their own.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'grasp_fcn_ros'
CORE = f'{PACKAGE}.core'
CLI = f'{PACKAGE}.cli'
#: The modules that talk to ROS 2 through rclpy: the node and its helpers, the benchmark of the
#: running node and the demo's player. No other module imports rclpy.
ROS_LAYER = {f'{PACKAGE}.{name}' for name in (
    'node', 'ros_conversions', 'transforms', 'spinning', 'launch_config', 'bench.ros',
    'demo.player')}


def _within(name, package):
    return name == package or name.startswith(package + '.')


def package_modules():
    """Module name -> source file of every module of the package (packages by ``__init__``)."""
    modules = {}
    for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for file in files:
            if not file.endswith('.py'):
                continue
            path = os.path.join(folder, file)
            parts = os.path.relpath(path, ROOT)[:-len('.py')].split(os.sep)
            if parts[-1] == '__init__':
                parts.pop()
            modules['.'.join(parts)] = path
    return modules


def imports_of(module, path, modules):
    """``(name, line, at_module_level)`` of every module a source file imports."""
    with open(path) as stream:
        tree = ast.parse(stream.read(), path)
    top_level = {id(node) for node in tree.body}
    package = module if path.endswith('__init__.py') else module.rpartition('.')[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1])
                base = f'{base}.{node.module}' if node.module else base
            else:
                base = node.module
            names = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base
                     for alias in node.names]
        else:
            continue
        found += [(name, node.lineno, id(node) in top_level) for name in names]
    return found


@pytest.fixture(scope='module')
def modules():
    return package_modules()


@pytest.fixture(scope='module')
def imports(modules):
    """Module -> its imports (see :func:`imports_of`)."""
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def _graph(imports, modules):
    """Module -> {imported module of the package: (line, at_module_level)}."""
    graph = {}
    for module, found in imports.items():
        edges = graph.setdefault(module, {})
        for name, line, top in found:
            if name in modules and name != module:
                edges.setdefault(name, (line, top))
    return graph


def _strongly_connected(graph):
    """Tarjan's strongly connected components of more than one module."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_every_layer_and_function_level_imports(modules, imports):
    assert {CLI, f'{CORE}.backends', f'{CORE}.export', f'{PACKAGE}.bench.pipeline',
            f'{PACKAGE}.demo.figures'} <= set(modules)
    assert ROS_LAYER <= set(modules), 'a module of the ROS layer was moved or renamed'
    cli = {(name, top) for name, _, top in imports[CLI]}
    assert (f'{PACKAGE}.bench', False) in cli  # imported inside a function
    assert (f'{PACKAGE}.options', True) in cli


def test_no_import_cycles(modules, imports):
    graph = _graph(imports, modules)
    cycles = []
    for component in _strongly_connected(graph):
        members = set(component)
        cycles.append('; '.join(
            f"{module} -> {target} (line {line}{'' if top else ', in a function'})"
            for module in component
            for target, (line, top) in sorted(graph[module].items()) if target in members))
    assert not cycles, 'import cycles: ' + ' | '.join(cycles)


def test_the_core_imports_nothing_outside_the_core(imports):
    outside = [f'{module} line {line}: {name}'
               for module, found in imports.items() if _within(module, CORE)
               for name, line, _ in found
               if _within(name, PACKAGE) and not _within(name, CORE)]
    assert not outside, 'the core imports from the package outside it: ' + '; '.join(outside)


def test_nothing_imports_the_cli(imports):
    users = [f'{module} line {line}' for module, found in imports.items() if module != CLI
             for name, line, _ in found if _within(name, CLI)]
    assert not users, 'the CLI is imported by: ' + '; '.join(users)


def test_only_the_ros_layer_imports_rclpy(imports):
    users = [f'{module} line {line}: {name}' for module, found in imports.items()
             if module not in ROS_LAYER
             for name, line, _ in found if _within(name, 'rclpy')]
    assert not users, 'rclpy imported outside the ROS layer: ' + '; '.join(users)
