/**
 * Every task the workflows may plan, by name: one line per task. A new task is its domain
 * file (defineTask) plus one line here.
 */
import {taskRegistry} from '../engine/contract.js';
import {etcdBackupTask} from '../backup/tasks.js';
import {sealedCopyTask} from '../crypto/tasks.js';
import {etcdCompactTask, etcdDefragMemberTask} from '../etcd/purge.js';
import {etcdAuthEnableTask, etcdAuthUsersTask, etcdClientCertTask, etcdRestartGate} from '../etcd/tasks.js';
import {firewallApplyTask} from '../firewall/tasks.js';
import {keysUnusedTask, rotationPublishTask, waitControlPlanesTask} from '../kube/rotation-tasks.js';
import {apiserverRestartGate, kubeadmConfigTask, reencryptTask} from '../kube/tasks.js';

export const tasks = taskRegistry([
	sealedCopyTask,
	apiserverRestartGate,
	reencryptTask,
	kubeadmConfigTask,
	firewallApplyTask,
	etcdRestartGate,
	etcdClientCertTask,
	etcdAuthUsersTask,
	etcdAuthEnableTask,
	etcdBackupTask,
	rotationPublishTask,
	waitControlPlanesTask,
	keysUnusedTask,
	etcdCompactTask,
	etcdDefragMemberTask,
]);
