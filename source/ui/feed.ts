/**
 * The finished part of the screen, as an append-only list: log lines, previews the
 * operator was shown, and the result block of every finished stage. The Ink wizard
 * renders it in <Static> (written once, then scrolls away); the live area stays small.
 */
import type {EngineState, LogLine, PreviewItem, StageView} from '../engine/state.js';
import {isFinished} from './format.js';

export type FeedItem =
	| {key: string; kind: 'log'; line: LogLine}
	| {key: string; kind: 'preview'; stageTitle: string; items: PreviewItem[]}
	| {key: string; kind: 'stage'; stage: StageView}
	| {key: string; kind: 'answers'; stageTitle: string; answers: NonNullable<StageView['answers']>};

export type Feed = {
	items: FeedItem[];
	logSeen: number;
	stagesSeen: ReadonlySet<string>;
	answersSeen?: ReadonlySet<string>;
	lastPreview?: string;
};

export const emptyFeed: Feed = {items: [], logSeen: 0, stagesSeen: new Set(), answersSeen: new Set()};

/**
 * Appends what is new in `state`. Idempotent: advancing twice with the same state
 * returns the same feed object, so it is safe to call during render.
 */
export function advanceFeed(feed: Feed, state: EngineState): Feed {
	const added: FeedItem[] = [];
	let {logSeen, lastPreview} = feed;
	let stagesSeen = feed.stagesSeen;
	let answersSeen = feed.answersSeen ?? new Set<string>();

	// The answers of a stage, once its questions are done (as plain prints them under each prompt).
	for (const stage of state.stages) {
		if (!stage.answers || stage.answers.length === 0 || answersSeen.has(stage.id)) continue;
		answersSeen = new Set([...answersSeen, stage.id]);
		added.push({key: `answers-${stage.id}`, kind: 'answers', stageTitle: stage.title, answers: stage.answers});
	}

	for (; logSeen < state.log.length; logSeen++) {
		const line = state.log[logSeen];
		if (line) added.push({key: `log-${logSeen}`, kind: 'log', line});
	}

	const prompt = state.prompt;
	// A timed confirm (deadline) asks about changes already shown: no preview to add.
	if (prompt?.type === 'confirm' && prompt.deadline === undefined) {
		const id = `${prompt.stageId}\n${prompt.message}\n${JSON.stringify(prompt.preview)}`;
		if (id !== lastPreview) {
			lastPreview = id;
			const stageTitle = state.stages.find(s => s.id === prompt.stageId)?.title ?? prompt.stageId;
			added.push({key: `preview-${feed.items.length + added.length}`, kind: 'preview', stageTitle, items: prompt.preview});
		}
	}

	for (const stage of state.stages) {
		if (stagesSeen.has(stage.id) || !isFinished(stage.phase)) continue;
		// A stage skipped by --only/--skip has nothing to report; the stage list shows it.
		// A stage declined, built on a declined one, or left out says why; one skipped by --only/--skip
		// or not reached has nothing to report (the stage list and the receipt show it).
		const quiet = !stage.skip || stage.skip.reason === 'not-selected' || stage.skip.reason === 'not-reached';
		if (stage.phase === 'skipped' && !stage.error && stage.checks.length === 0 && quiet) continue;
		if (stagesSeen === feed.stagesSeen) stagesSeen = new Set(stagesSeen);
		(stagesSeen as Set<string>).add(stage.id);
		added.push({key: `stage-${stage.id}`, kind: 'stage', stage});
	}

	if (added.length === 0 && lastPreview === feed.lastPreview) return feed;
	return {items: [...feed.items, ...added], logSeen, stagesSeen, answersSeen, lastPreview};
}
