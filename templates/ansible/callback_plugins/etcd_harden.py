# etcd-harden fleet: a stdout callback that writes one JSON line per event (play, task,
# retry, result, stats) so `etcd-harden fleet` can show one row per node per step while the
# play runs. Results of no_log tasks are already censored by Ansible before they get here;
# beyond that only the task's message, exit code and the tail of stderr are written, and the
# command's stdout only for tasks that collect it (etcd_harden_collect) or that failed.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = '''
    name: etcd_harden
    type: stdout
    short_description: one JSON line per event, for etcd-harden fleet
    description:
        - Writes play, task, retry, result and stats events as JSON lines on stdout.
'''

import json
import sys

from ansible import context
from ansible.plugins.callback import CallbackBase

STDOUT_LIMIT = 262144


def _step(task):
    try:
        value = task.get_vars().get('etcd_harden_step')
    except Exception:  # noqa: BLE001 - a task without vars still gets a row
        value = None
    if isinstance(value, str) and '{{' not in value:
        return value
    name = task.get_name() or ''
    return name.split(':', 1)[0].strip().lower() if ':' in name else name.strip().lower()


def _collect(task):
    # Under --check every tool run is a --dry-run: its plan is what the operator asked for.
    if context.CLIARGS.get('check'):
        return True
    try:
        return bool(task.get_vars().get('etcd_harden_collect'))
    except Exception:  # noqa: BLE001
        return False


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'etcd_harden'

    def _emit(self, event):
        sys.stdout.write(json.dumps(event, default=str) + '\n')
        sys.stdout.flush()

    def v2_playbook_on_play_start(self, play):
        self._emit({'event': 'play', 'name': play.get_name()})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit({'event': 'task', 'task': task.get_name(), 'step': _step(task)})

    def v2_playbook_on_handler_task_start(self, task):
        self._emit({'event': 'task', 'task': task.get_name(), 'step': _step(task)})

    def _result(self, status, result):
        task = result._task
        data = result._result if isinstance(result._result, dict) else {}
        event = {
            'event': 'result',
            'host': result._host.get_name(),
            'task': task.get_name(),
            'step': _step(task),
            'status': 'changed' if status == 'ok' and data.get('changed') else status,
        }
        if 'censored' in data:
            event['censored'] = True
        for key in ('rc', 'msg', 'attempts'):
            if key in data and data[key] is not None:
                event[key] = data[key]
        stderr = data.get('stderr')
        if isinstance(stderr, str) and stderr:
            event['stderr'] = stderr.splitlines()[-8:]
        stdout = data.get('stdout')
        if isinstance(stdout, str) and stdout and (_collect(task) or status == 'failed'):
            event['stdout'] = stdout[:STDOUT_LIMIT]
        self._emit(event)

    def v2_runner_on_ok(self, result):
        self._result('ok', result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result('ignored' if ignore_errors else 'failed', result)

    def v2_runner_on_skipped(self, result):
        self._result('skipped', result)

    def v2_runner_on_unreachable(self, result):
        self._result('unreachable', result)

    def v2_runner_retry(self, result):
        data = result._result if isinstance(result._result, dict) else {}
        self._emit({'event': 'retry', 'host': result._host.get_name(), 'task': result._task.get_name(), 'step': _step(result._task),
                    'attempts': data.get('attempts'), 'retries': data.get('retries')})

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for host in sorted(stats.processed.keys()):
            hosts[host] = stats.summarize(host)
        self._emit({'event': 'stats', 'hosts': hosts})
