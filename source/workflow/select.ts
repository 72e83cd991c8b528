/** The one stage selector for --only and --skip, for every command. */
import {InputError} from '../engine/contract.js';

export type StagePick = {only?: string[]; skip?: string[]};

/**
 * The stages to run and the ones left out, in the workflow's order. An unknown id is bad
 * input naming the command's stages.
 */
export function selectStages<S extends {id: string}>(all: readonly S[], pick: StagePick, command?: string): {selected: S[]; skipped: S[]} {
	const ids = all.map(stage => stage.id);
	for (const id of [...(pick.only ?? []), ...(pick.skip ?? [])]) {
		if (!ids.includes(id)) {
			throw new InputError(command ? `unknown stage "${id}" for ${command}: its stages are ${ids.join(', ')}.` : `unknown stage "${id}": known stages are ${ids.join(', ')}.`);
		}
	}
	const wanted = (stage: S): boolean => (pick.only ? pick.only.includes(stage.id) : !(pick.skip ?? []).includes(stage.id));
	return {selected: all.filter(wanted), skipped: all.filter(stage => !wanted(stage))};
}
