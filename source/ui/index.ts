export {runInk, canUseInk, RawModeUnavailableError, type InkIo} from './run.js';
export {Wizard, type WizardProps} from './wizard.js';
export * as format from './format.js';
