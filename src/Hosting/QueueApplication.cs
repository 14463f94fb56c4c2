using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Hosting;

namespace Queue.Hosting;

/// <summary>
/// The host builders every service and the CLI's in-process engine start from: .NET's defaults, but
/// configuration files are not watched for changes. The defaults watch the content root — the folder
/// the program was started from, with its subfolders — and the embedded engine's data lives there: every
/// map output, spill and part written raised file-system events in every process of the engine (a
/// profile of a 2,000-task job on the cluster showed a follower coordinator busy reading them). Queue
/// is configured by environment and command line; a changed file needs a restart, as in a container.
/// </summary>
public static class QueueApplication
{
    private const string NoReload = "--hostBuilder:reloadConfigOnChange=false";

    public static WebApplicationBuilder CreateBuilder(string[] args) => WebApplication.CreateBuilder([.. args, NoReload]);

    public static HostApplicationBuilder CreateHostBuilder() => Host.CreateApplicationBuilder([NoReload]);
}
