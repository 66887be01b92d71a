/**
 * `/retrain` (admins): cleaning + features + head training on TRAIN_DATA, then evaluation, shown
 * live on one message (src/bot/job-message.ts). At the end Promote / Discard buttons: Promote
 * makes the new model active (forced: the admin saw the comparison) and swaps the classifier's
 * head in place; Discard deletes the candidate. The active model is never touched otherwise.
 */
import { EmbedBuilder, InteractionContextType, MessageFlags, PermissionFlagsBits, SlashCommandBuilder } from 'discord.js';
import { adminServices, jobUser } from '../src/bot/admin.ts';
import { chatCommand, type ButtonRoute } from '../src/bot/command.ts';
import { BUTTONS, JobMessage } from '../src/bot/job-message.ts';
import { jobParams } from '../src/jobs/work.ts';

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

const promoteButton: ButtonRoute = {
  prefix: BUTTONS.promote,
  admin: true,
  async handle(ctx) {
    const { interaction, services, args } = ctx;
    const [modelId = '', jobId = ''] = args;
    if (await alreadyDecided(ctx, jobId)) return 'bad_input';
    const admin = adminServices(services);
    await interaction.deferUpdate();
    const by = jobUser(interaction.user);
    const { previous } = await admin.models.promote(modelId);
    const detail = `\`${modelId}\` is now the active model${previous && previous !== modelId ? ` (it replaces \`${previous}\`; \`/model rollback\` goes back)` : ''}; it answers from now on, no restart needed.`;
    await admin.jobs.decide(jobId, { action: 'promoted', by, at: new Date().toISOString(), detail });
    services.log(`admin: ${by.name} (${by.id}) promoted model ${modelId} (job #${jobId}); previous ${previous ?? 'none'}`);
    const embed = EmbedBuilder.from(interaction.message.embeds[0]!).setDescription(`🚀 **Promoted** by ${by.name}: ${detail}`);
    await interaction.editReply({ embeds: [embed], components: [] });
  },
};

const discardButton: ButtonRoute = {
  prefix: BUTTONS.discard,
  admin: true,
  async handle(ctx) {
    const { interaction, services, args } = ctx;
    const [modelId = '', jobId = ''] = args;
    if (await alreadyDecided(ctx, jobId)) return 'bad_input';
    const admin = adminServices(services);
    await interaction.deferUpdate();
    const by = jobUser(interaction.user);
    await admin.models.discard(modelId);
    const detail = `model \`${modelId}\` deleted; the active model is unchanged.`;
    await admin.jobs.decide(jobId, { action: 'discarded', by, at: new Date().toISOString(), detail });
    services.log(`admin: ${by.name} (${by.id}) discarded model ${modelId} (job #${jobId})`);
    const embed = EmbedBuilder.from(interaction.message.embeds[0]!).setDescription(`🗑️ **Discarded** by ${by.name}: ${detail}`);
    await interaction.editReply({ embeds: [embed], components: [] });
  },
};

export const retrain = chatCommand({
  definition: new SlashCommandBuilder()
    .setName('retrain')
    .setDescription('Retrain the model on the configured training data, with live progress (admins)')
    .setDefaultMemberPermissions(PermissionFlagsBits.Administrator)
    .setContexts(InteractionContextType.Guild)
    .toJSON(),
  surface: 'admin',
  cooldown: false,
  admin: true,
  buttons: [promoteButton, discardButton],
  defer: () => 'public',
  async execute({ interaction, services }) {
    const admin = adminServices(services);
    const params = jobParams('retrain', services.config.data);
    const view = new JobMessage(interaction, admin, services.log);
    view.follow(await admin.jobs.start(params, jobUser(interaction.user), view.watch));
  },
});
