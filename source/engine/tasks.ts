import type {TaskRegistry} from './engine.js';

/**
 * Executors for TaskChanges, by task name. Stages plan tasks as data; the engine runs
 * them here, through the host. (The file-level stages plan no tasks yet.)
 */
export const tasks: TaskRegistry = {};
