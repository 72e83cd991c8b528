#!/usr/bin/env node
// Fast paths first: --help and --version load nothing but the argument module, so they
// answer in about the time node itself takes to start.
const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
	const {demoHelpText, helpText} = await import('./source/cli/args.js');
	process.stdout.write(argv[0] === 'demo' ? demoHelpText : helpText);
} else {
	const {main} = await import('./source/cli/main.js');
	process.exitCode = await main(argv);
}
