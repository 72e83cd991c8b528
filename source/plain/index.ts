export {runPlain, type PlainIo} from './plain.js';
