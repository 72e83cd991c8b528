// Encryption at rest on a live control plane: the built CLI (dist/cli.js) runs inside the
// testbed's namespaces with its real default paths, against real etcd and a real
// kube-apiserver 1.20.2 run by the kubelet stand-in. Nothing here is mocked. The suite itself is
// in encryption-suite.ts; executable.test.ts runs it once more with the single executable.
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {encryptionAtRestSuite} from './encryption-suite.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'dist', 'cli.js');

encryptionAtRestSuite('encryption at rest on a live control plane', {program: [process.execPath, CLI], secrets: 3000, configMaps: 500, namespaces: 3});
