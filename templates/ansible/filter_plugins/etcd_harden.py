# etcd-harden fleet: the agreement gate's test. From the output of `etcd-harden status
# --json` on the first control plane, the control planes that do not report its config
# hash in kube-system/etcd-harden-status, each with why ("cp-2: has not reported");
# and whether a run of the tool did something (its --json result lists files and work).
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

PREFIX = 'rotation.node.'


def etcd_harden_disagreement(status_stdout, nodes):
    try:
        rows = json.loads(status_stdout or '')
    except ValueError:
        first = (status_stdout or '').strip().splitlines()[:1]
        return ['etcd-harden status did not answer with JSON' + (': ' + first[0] if first else '')]
    if not isinstance(rows, list):
        return ['etcd-harden status did not answer with a list of findings']
    problems = []
    seen = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        ident = str(row.get('id', ''))
        if ident == 'rotation.reports':
            problems.append(str(row.get('actual', 'the reports cannot be read')))
        if ident.startswith(PREFIX):
            seen[ident[len(PREFIX):]] = row
    for node in nodes:
        row = seen.get(node)
        if row is None:
            problems.append('%s: has not reported' % node)
        elif row.get('status') != 'PASS':
            problems.append('%s: %s' % (node, row.get('actual', 'runs another config')))
    for node, row in sorted(seen.items()):
        if node not in nodes and row.get('status') != 'PASS':
            problems.append('%s (not in the play): %s' % (node, row.get('actual', 'runs another config')))
    return problems


def etcd_harden_changed(run_stdout):
    """Whether a run of etcd-harden (its --json result) did something on the node: wrote a
    file, or ran a task (re-encryption, a report to the status ConfigMap, a defrag)."""
    try:
        result = json.loads(run_stdout or '')
    except ValueError:
        return False
    return isinstance(result, dict) and result.get('dryRun') is not True and bool(result.get('files') or result.get('work'))


class FilterModule(object):
    def filters(self):
        return {'etcd_harden_disagreement': etcd_harden_disagreement, 'etcd_harden_changed': etcd_harden_changed}
