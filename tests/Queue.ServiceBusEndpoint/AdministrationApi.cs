using System.Net;
using System.Text;
using System.Xml;

namespace Queue.ServiceBusEndpoint;

/// <summary>
/// The administration API's two reads the engine makes (<c>GetQueueAsync</c>, <c>GetQueueRuntimePropertiesAsync</c>):
/// <c>GET /{queue}?api-version=…</c> answered with the queue's ATOM entry (lock duration, max delivery
/// count, message counts), SAS-authorised with the Manage right. Plain HTTP on its own port, as the
/// official emulator serves it; anything else is 501.
/// </summary>
internal sealed class AdministrationApi : IDisposable
{
    private const string Atom = "http://www.w3.org/2005/Atom";
    private const string Connect = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect";
    private readonly HttpListener listener = new();
    private readonly Broker broker;
    private readonly IReadOnlyList<AccessPolicy> policies;
    private readonly Action<string> log;
    private readonly CancellationTokenSource stopping = new();
    private Task? serving;

    public AdministrationApi(int port, Broker broker, IReadOnlyList<AccessPolicy> policies, Action<string> log)
    {
        this.broker = broker;
        this.policies = policies;
        this.log = log;
        listener.Prefixes.Add($"http://127.0.0.1:{port}/");
    }

    public void Start()
    {
        listener.Start();
        serving = Task.Run(ServeAsync);
    }

    private async Task ServeAsync()
    {
        while (!stopping.IsCancellationRequested)
        {
            HttpListenerContext context;
            try
            {
                context = await listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            try
            {
                Answer(context);
            }
            catch (Exception e) when (e is HttpListenerException or IOException)
            {
                // The client went away.
            }
        }
    }

    private void Answer(HttpListenerContext context)
    {
        var request = context.Request;
        var response = context.Response;
        var name = Uri.UnescapeDataString(request.Url!.AbsolutePath.Trim('/'));
        if (request.HttpMethod != "GET" || name.Length == 0 || name.Contains('/', StringComparison.Ordinal) || request.QueryString["api-version"] is null)
        {
            log($"administration: refused {request.HttpMethod} {request.Url.PathAndQuery}: not implemented");
            Reply(response, 501, Error(501, $"The test endpoint implements GET of a queue only, not {request.HttpMethod} {request.Url.AbsolutePath}."));
            return;
        }
        var (policy, _) = SasTokens.Check(request.Headers["Authorization"], $"https://{request.Url.Host}/{name}", policies);
        if (policy is null || !policy.Rights.HasFlag(AccessRights.Manage))
        {
            Reply(response, 401, Error(401, "Unauthorized: Manage claim is required for this operation."));
            return;
        }
        if (broker.Describe(name) is not { } queue)
        {
            Reply(response, 404, Error(404, $"The messaging entity '{name}' could not be found."));
            return;
        }
        var (settings, active, dead) = queue;
        var entry = new StringBuilder();
        using (var writer = XmlWriter.Create(entry, new XmlWriterSettings { OmitXmlDeclaration = true }))
        {
            writer.WriteStartElement("entry", Atom);
            writer.WriteStartElement("title", Atom);
            writer.WriteAttributeString("type", "text");
            writer.WriteString(name);
            writer.WriteEndElement();
            writer.WriteStartElement("content", Atom);
            writer.WriteAttributeString("type", "application/xml");
            writer.WriteStartElement("QueueDescription", Connect);
            writer.WriteElementString("LockDuration", Connect, XmlConvert.ToString(settings.LockDuration));
            writer.WriteElementString("RequiresSession", Connect, "false");
            writer.WriteElementString("DeadLetteringOnMessageExpiration", Connect, "false");
            writer.WriteElementString("MaxDeliveryCount", Connect, settings.MaxDeliveryCount.ToString(System.Globalization.CultureInfo.InvariantCulture));
            writer.WriteElementString("MessageCount", Connect, (active + dead).ToString(System.Globalization.CultureInfo.InvariantCulture));
            writer.WriteStartElement("CountDetails", Connect);
            writer.WriteElementString("ActiveMessageCount", Connect, active.ToString(System.Globalization.CultureInfo.InvariantCulture));
            writer.WriteElementString("DeadLetterMessageCount", Connect, dead.ToString(System.Globalization.CultureInfo.InvariantCulture));
            writer.WriteEndElement();
            writer.WriteElementString("Status", Connect, "Active");
            writer.WriteEndElement();
            writer.WriteEndElement();
            writer.WriteEndElement();
        }
        Reply(response, 200, entry.ToString(), "application/atom+xml;type=entry;charset=utf-8");
    }

    private static string Error(int code, string detail) =>
        $"<Error><Code>{code}</Code><Detail>{SecurityElementEscape(detail)}</Detail></Error>";

    private static string SecurityElementEscape(string text) => System.Security.SecurityElement.Escape(text) ?? "";

    private static void Reply(HttpListenerResponse response, int status, string body, string type = "application/xml; charset=utf-8")
    {
        var bytes = Encoding.UTF8.GetBytes(body);
        response.StatusCode = status;
        response.ContentType = type;
        response.ContentLength64 = bytes.Length;
        response.OutputStream.Write(bytes);
        response.Close();
    }

    public void Dispose()
    {
        stopping.Cancel();
        listener.Close();
        serving?.Wait(TimeSpan.FromSeconds(5));
        stopping.Dispose();
    }
}
