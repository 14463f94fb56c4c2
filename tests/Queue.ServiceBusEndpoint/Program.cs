using Queue.ServiceBusEndpoint;

// queue-servicebus-endpoint --port 5672 --admin-port 5300 --key KEY --queue tasks --queue events [--lock 30s] [--max-deliveries 100]
// Runs the Service Bus test endpoint on loopback until SIGTERM or Ctrl+C; prints one line when ready.
var options = CommandLine.Parse(args);
if (options is null)
{
    Console.Error.WriteLine("usage: --port N --admin-port N --key BASE64 --queue NAME... [--lock-seconds S] [--max-deliveries N]");
    return 2;
}
using var endpoint = ServiceBusTestEndpoint.Start(options.Port, options.AdminPort,
    [new AccessPolicy(ServiceBusTestEndpoint.RootPolicy, options.Key, AccessRights.All)],
    line => Console.Error.WriteLine(line));
foreach (var queue in options.Queues)
{
    endpoint.CreateQueue(queue, options.Lock, options.MaxDeliveries);
}
Console.WriteLine($"Service Bus test endpoint: AMQP on 127.0.0.1:{endpoint.AmqpPort}, administration on 127.0.0.1:{endpoint.AdministrationPort}, queues {string.Join(", ", options.Queues)}");
using var stop = new CancellationTokenSource();
using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, context =>
{
    context.Cancel = true;
    stop.Cancel();
});
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};
try
{
    await Task.Delay(Timeout.Infinite, stop.Token);
}
catch (OperationCanceledException)
{
}
return 0;

internal sealed record CommandLine(int Port, int AdminPort, string Key, List<string> Queues, TimeSpan Lock, int MaxDeliveries)
{
    public static CommandLine? Parse(string[] args)
    {
        int port = 0, admin = 0, deliveries = 100;
        var lockSeconds = 30.0;
        string? key = null;
        var queues = new List<string>();
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            var value = args[i + 1];
            switch (args[i])
            {
                case "--port": port = int.Parse(value, System.Globalization.CultureInfo.InvariantCulture); break;
                case "--admin-port": admin = int.Parse(value, System.Globalization.CultureInfo.InvariantCulture); break;
                case "--key": key = value; break;
                case "--queue": queues.Add(value); break;
                case "--lock-seconds": lockSeconds = double.Parse(value, System.Globalization.CultureInfo.InvariantCulture); break;
                case "--max-deliveries": deliveries = int.Parse(value, System.Globalization.CultureInfo.InvariantCulture); break;
                default: return null;
            }
        }
        return key is null || port <= 0 || admin <= 0 || queues.Count == 0 || args.Length % 2 != 0
            ? null
            : new CommandLine(port, admin, key, queues, TimeSpan.FromSeconds(lockSeconds), deliveries);
    }
}
