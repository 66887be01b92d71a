/**
 * `/retrain` (admins): cleaning + features + head training on TRAIN_DATA, then evaluation, shown
 * live on one message (src/bot/job-message.ts). At the end Promote / Discard buttons: Promote
 * makes the new model active (forced: the admin saw the comparison) and swaps the classifier's
 * head in place; Discard deletes the candidate. The active model is never touched otherwise.
 */
import { EmbedBuilder, MessageFlags } from 'discord.js';
import { ADMIN_COMMAND, adminServices, adminSlashCommand, jobUser } from '../src/bot/admin.ts';
import { chatCommand, type ButtonRoute } from '../src/bot/command.ts';
import { BUTTONS, followJob } from '../src/bot/job-message.ts';
import { MODEL_ID_PATTERN } from '../src/model/registry.ts';

/** A decision already taken on this job's model (two admins pressing at once): say so instead. */
async function alreadyDecided(ctx: Parameters<ButtonRoute['handle']>[0], jobId: string): Promise<boolean> {
  const record = await adminServices(ctx.services).jobs.get(jobId);
  if (!record?.decision) return false;
  await ctx.interaction.reply({
    content: `That model was already ${record.decision.action} by ${record.decision.by.name}.`,
    flags: MessageFlags.Ephemeral,
  });
  return true;
}

/**
 * A Promote or Discard button: one decision per job's model, recorded with who took it, logged,
 * and shown on the result message (whose buttons go away).
 */
function decisionButton(
  prefix: string,
  action: 'promoted' | 'discarded',
  heading: string,
  act: (services: Parameters<typeof adminServices>[0], modelId: string) => Promise<{ detail: string; log: string }>,
): ButtonRoute {
  return {
    prefix,
    admin: true,
    async handle(ctx) {
      const { interaction, services, args } = ctx;
      const [modelId = '', jobId = ''] = args;
      // The ids come from the button, which a client can craft: the model must be this job's own.
      const record = /^\d{1,12}$/.test(jobId) ? await adminServices(services).jobs.get(jobId) : null;
      if (!record || record.result?.kind !== 'retrain' || record.result.modelId !== modelId || !MODEL_ID_PATTERN.test(modelId)) {
        services.log(`admin: refused ${prefix} from ${interaction.user.id}: model "${modelId.slice(0, 60)}" is not the model of job #${jobId.slice(0, 12)}`);
        await interaction.reply({ content: 'That button does not match a retrain and its model; nothing was changed.', flags: MessageFlags.Ephemeral });
        return 'bad_input';
      }
      if (await alreadyDecided(ctx, jobId)) return 'bad_input';
      await interaction.deferUpdate();
      const by = jobUser(interaction.user);
      const { detail, log } = await act(services, modelId);
      await adminServices(services).jobs.decide(jobId, { action, by, at: new Date().toISOString(), detail });
      services.log(`admin: ${by.name} (${by.id}) ${action} model ${modelId} (job #${jobId})${log}`);
      const embed = EmbedBuilder.from(interaction.message.embeds[0]!).setDescription(`${heading} by ${by.name}: ${detail}`);
      await interaction.editReply({ embeds: [embed], components: [] });
    },
  };
}

const promoteButton = decisionButton(BUTTONS.promote, 'promoted', '🚀 **Promoted**', async (services, modelId) => {
  const { previous } = await adminServices(services).models.promote(modelId);
  return {
    detail: `\`${modelId}\` is now the active model${previous && previous !== modelId ? ` (it replaces \`${previous}\`; \`/model rollback\` goes back)` : ''}; it answers from now on, no restart needed.`,
    log: `; previous ${previous ?? 'none'}`,
  };
});

const discardButton = decisionButton(BUTTONS.discard, 'discarded', '🗑️ **Discarded**', async (services, modelId) => {
  await adminServices(services).models.discard(modelId);
  return { detail: `model \`${modelId}\` deleted; the active model is unchanged.`, log: '' };
});

export const retrain = chatCommand({
  definition: adminSlashCommand('retrain', 'Retrain the model on the configured training data, with live progress (admins)').toJSON(),
  ...ADMIN_COMMAND,
  buttons: [promoteButton, discardButton],
  defer: () => 'public',
  async execute({ interaction, services }) {
    const admin = adminServices(services);
    await followJob(interaction, admin, services.log, (watch) => admin.jobs.start({ kind: 'retrain' }, jobUser(interaction.user), watch));
  },
});
